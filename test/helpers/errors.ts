/** Assertions on VaiError: the error a call throws, or a promise rejects with. */
import { expect } from 'vitest';
import { VaiError } from '../../core/errors.js';

export function vaiErrorOf(fn: () => unknown): VaiError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(VaiError);
    return err as VaiError;
  }
  throw new Error('expected a VaiError, got none');
}

export async function vaiRejection(p: Promise<unknown>): Promise<VaiError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(VaiError);
    return err as VaiError;
  }
  throw new Error('expected a rejection with a VaiError, got none');
}
