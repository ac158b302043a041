/** The providers of boxes: `local` (the built-in simulator), `ssh` (a box you have), `vast` (Vast.ai). */
export const PROVIDERS = ['local', 'ssh', 'vast'] as const;
export type ProviderName = (typeof PROVIDERS)[number];
