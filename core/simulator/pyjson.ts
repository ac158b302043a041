/**
 * JSON as Python's `json.dumps` writes it (", " and ": " separators, non-ASCII escaped), which is
 * how ComfyUI embeds the graph in a PNG's `prompt` and `workflow` text chunks. Any JSON parser
 * reads it back to the same value; matching the bytes keeps simulated outputs looking real.
 */

function asciiOnly(json: string): string {
  return json.replace(/[\u0080-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
}

export function pyJsonDumps(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  switch (typeof value) {
    case 'string':
      return asciiOnly(JSON.stringify(value));
    case 'number':
      if (Number.isNaN(value)) return 'NaN';
      if (!Number.isFinite(value)) return value > 0 ? 'Infinity' : '-Infinity';
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object':
      if (Array.isArray(value)) return '[' + value.map(pyJsonDumps).join(', ') + ']';
      return (
        '{' +
        Object.entries(value as Record<string, unknown>)
          .filter(([, v]) => v !== undefined && typeof v !== 'function')
          .map(([k, v]) => asciiOnly(JSON.stringify(k)) + ': ' + pyJsonDumps(v))
          .join(', ') +
        '}'
      );
    default:
      return 'null';
  }
}
