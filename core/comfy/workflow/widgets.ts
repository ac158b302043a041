/**
 * How ComfyUI's frontend lays out a node's widgets, so a UI workflow's `widgets_values` (a plain
 * list) can be named after the node's inputs: which inputs get widgets, and the extra widgets
 * whose values are saved in between.
 */
import { isObject } from '../../lib/json.js';
import type { InputSpec, NodeInfo } from '../types.js';

const WIDGET_TYPES = new Set(['INT', 'FLOAT', 'BOOLEAN', 'STRING', 'COMBO']);
const CONTROL_VALUES = new Set(['fixed', 'increment', 'decrement', 'randomize', 'increment-wrap']);
const UPLOAD_BUTTON_VALUES = new Set(['image', 'video', 'audio', 'file', 'upload']);

function specOptions(spec: InputSpec): Record<string, unknown> {
  return isObject(spec[1]) ? spec[1] : {};
}

/** The widget a frontend makes for an input, or undefined when the input is a socket only. */
function widgetType(spec: InputSpec): string | undefined {
  if (Array.isArray(spec[0])) return 'COMBO';
  return typeof spec[0] === 'string' && WIDGET_TYPES.has(spec[0]) ? spec[0] : undefined;
}

function isMediaUpload(spec: InputSpec): boolean {
  const o = specOptions(spec);
  return widgetType(spec) === 'COMBO' && [o.image_upload, o.video_upload, o.animated_image_upload, o.audio_upload].some((x) => x === true);
}

/** A node type's inputs of one group in their declared order (`input_order` when the box sends it). */
function orderedInputs(info: NodeInfo, group: 'required' | 'optional'): [string, InputSpec][] {
  const specs = info.input?.[group] ?? {};
  const order = info.input_order?.[group] ?? [];
  const names = [...order.filter((n) => n in specs), ...Object.keys(specs).filter((n) => !order.includes(n))];
  return names.map((n) => [n, specs[n]!]);
}

export function allInputs(info: NodeInfo): Map<string, InputSpec> {
  return new Map([...orderedInputs(info, 'required'), ...orderedInputs(info, 'optional')]);
}

/**
 * One entry of a node's `widgets_values`: an input's value, or one of the frontend's extra widgets
 * whose value is saved too but is not an input: the "control after generate" combo after a seed
 * (and its filter box after a combo), the upload button after the required inputs of a loader,
 * and, in workflows saved before frontend 1.16, a dummy value for each `forceInput` input.
 */
export type Slot = { input: string; spec: InputSpec } | { extra: 'control' | 'filter' | 'upload' | 'legacy' };

export function widgetSlots(info: NodeInfo, legacyForceInput: boolean): Slot[] {
  const slots: Slot[] = [];
  const add = (name: string, spec: InputSpec) => {
    const type = widgetType(spec);
    if (!type) return;
    const o = specOptions(spec);
    if (o.forceInput) {
      if (!legacyForceInput) return;
      slots.push({ extra: 'legacy' });
    } else {
      slots.push({ input: name, spec });
    }
    // The frontend gives every INT named seed/noise_seed a control widget, and any INT or COMBO
    // whose spec asks for one; a COMBO's control comes with a filter box.
    if (type === 'INT' && (o.control_after_generate || name === 'seed' || name === 'noise_seed')) slots.push({ extra: 'control' });
    if (type === 'COMBO' && o.control_after_generate) slots.push({ extra: 'control' }, { extra: 'filter' });
  };
  const required = orderedInputs(info, 'required');
  for (const [name, spec] of required) add(name, spec);
  // The frontend appends the upload button to the required inputs (uploadImage.ts).
  if (required.some(([, spec]) => isMediaUpload(spec))) slots.push({ extra: 'upload' });
  for (const [name, spec] of orderedInputs(info, 'optional')) add(name, spec);
  return slots;
}

/**
 * Names a node's widget values (UI order) after its inputs. When the number of values matches
 * the frontend's layout, the extras are skipped by position; otherwise (a frontend that saved
 * fewer extras) an extra is skipped only when the value looks like one.
 */
export function nameWidgetValues(values: readonly unknown[], info: NodeInfo): Map<string, unknown> {
  const modern = widgetSlots(info, false);
  const legacy = widgetSlots(info, true);
  const slots = values.length !== modern.length && values.length === legacy.length ? legacy : modern;
  const strict = values.length === slots.length;
  const named = new Map<string, unknown>();
  let i = 0;
  let controlSkipped = false;
  for (const slot of slots) {
    if (i >= values.length) break;
    if ('input' in slot) {
      named.set(slot.input, values[i++]);
      continue;
    }
    if (strict) {
      i++;
      continue;
    }
    const v = values[i];
    if (slot.extra === 'control') {
      controlSkipped = typeof v === 'boolean' || (typeof v === 'string' && CONTROL_VALUES.has(v));
      if (controlSkipped) i++;
    } else if (slot.extra === 'filter') {
      if (controlSkipped && typeof v === 'string') i++;
    } else if (slot.extra === 'upload') {
      if (v === null || (typeof v === 'string' && UPLOAD_BUTTON_VALUES.has(v))) i++;
    }
  }
  return named;
}

/** A widget's value in a new node, as the frontend creates it: the spec's default, else a combo's first choice. */
export function defaultValue(spec: InputSpec): { value: unknown } | undefined {
  const o = specOptions(spec);
  if ('default' in o) return { value: o.default };
  if (Array.isArray(spec[0]) && spec[0].length > 0) return { value: spec[0][0] };
  if (spec[0] === 'COMBO' && Array.isArray(o.options) && o.options.length > 0) return { value: o.options[0] };
  return undefined;
}
