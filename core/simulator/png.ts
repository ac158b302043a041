/**
 * A small PNG writer and reader: 8-bit RGB images with text chunks, as ComfyUI's SaveImage writes
 * them (the API graph in a `prompt` text chunk, the UI graph in `workflow`). The simulator writes
 * its outputs with it; tests read them back to check size and metadata.
 */
import zlib from 'node:zlib';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export interface PngInfo {
  width: number;
  height: number;
  /** keyword -> text, from tEXt, zTXt and iTXt chunks. */
  text: Record<string, string>;
}

function chunk(type: string, data: Buffer): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  data.copy(out, 8);
  out.writeUInt32BE(zlib.crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

function isLatin1(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0xff) return false;
  return true;
}

/** tEXt when the text fits latin-1 (what PNG readers expect), else iTXt in UTF-8, as Pillow does. */
function textChunk(keyword: string, text: string): Buffer {
  if (keyword.length < 1 || keyword.length > 79 || !isLatin1(keyword) || keyword.includes('\0')) {
    throw new Error(`PNG text keyword must be 1-79 latin-1 characters without NUL, got ${JSON.stringify(keyword)}`);
  }
  if (isLatin1(text)) return chunk('tEXt', Buffer.concat([Buffer.from(keyword, 'latin1'), Buffer.from([0]), Buffer.from(text, 'latin1')]));
  // keyword \0 compression-flag compression-method language \0 translated-keyword \0 text
  return chunk('iTXt', Buffer.concat([Buffer.from(keyword, 'latin1'), Buffer.from([0, 0, 0, 0, 0]), Buffer.from(text, 'utf8')]));
}

/**
 * Encodes `rgb` (width*height*3 bytes, rows top to bottom) as an 8-bit RGB PNG with the given text
 * chunks. Rows use the Sub filter, or Up when a row repeats the one above: smooth or blocky images
 * then deflate small and fast.
 */
export function encodePng(width: number, height: number, rgb: Buffer, textChunks: Record<string, string> = {}, options: { level?: number } = {}): Buffer {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1 || width > 0x7fffffff || height > 0x7fffffff) {
    throw new Error(`PNG size must be positive integers, got ${width}x${height}`);
  }
  const stride = width * 3;
  if (rgb.length !== stride * height) throw new Error(`PNG pixel data must be ${stride * height} bytes for ${width}x${height} RGB, got ${rgb.length}`);
  const raw = Buffer.allocUnsafe((stride + 1) * height);
  for (let y = 0; y < height; y++) {
    const src = y * stride;
    const dst = y * (stride + 1);
    if (y > 0 && rgb.compare(rgb, src - stride, src, src, src + stride) === 0) {
      raw[dst] = 2; // Up: a row equal to the one above is all zeros
      raw.fill(0, dst + 1, dst + 1 + stride);
      continue;
    }
    raw[dst] = 1; // Sub: each byte minus the same channel of the pixel to its left
    raw[dst + 1] = rgb[src]!;
    raw[dst + 2] = rgb[src + 1]!;
    raw[dst + 3] = rgb[src + 2]!;
    for (let i = 3; i < stride; i++) raw[dst + 1 + i] = (rgb[src + i]! - rgb[src + i - 3]!) & 0xff;
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: RGB
  ihdr[10] = 0; // deflate
  ihdr[11] = 0; // adaptive filtering
  ihdr[12] = 0; // no interlace
  return Buffer.concat([
    SIGNATURE,
    chunk('IHDR', ihdr),
    ...Object.entries(textChunks).map(([k, v]) => textChunk(k, v)),
    chunk('IDAT', zlib.deflateSync(raw, { level: options.level ?? 6 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

function inflateText(data: Buffer, what: string): string {
  try {
    return zlib.inflateSync(data).toString(what === 'zTXt' ? 'latin1' : 'utf8');
  } catch (err) {
    throw new Error(`not a valid PNG: the compressed ${what} text does not inflate (${(err as Error).message})`);
  }
}

/** One text chunk's keyword and text, or undefined for a chunk that is not text. */
function readText(type: string, data: Buffer): [string, string] | undefined {
  const nul = data.indexOf(0);
  if (nul < 1) throw new Error(`not a valid PNG: a ${type} chunk has no keyword`);
  const keyword = data.toString('latin1', 0, nul);
  if (type === 'tEXt') return [keyword, data.toString('latin1', nul + 1)];
  if (type === 'zTXt') return [keyword, inflateText(data.subarray(nul + 2), type)];
  // iTXt: keyword \0 flag method language \0 translated \0 text
  const compressed = data[nul + 1] === 1;
  const langEnd = data.indexOf(0, nul + 3);
  const transEnd = langEnd < 0 ? -1 : data.indexOf(0, langEnd + 1);
  if (transEnd < 0) throw new Error('not a valid PNG: a truncated iTXt chunk');
  const body = data.subarray(transEnd + 1);
  return [keyword, compressed ? inflateText(body, type) : body.toString('utf8')];
}

/**
 * Reads a PNG's size and text chunks. Checks the signature, every chunk's CRC, that IHDR comes
 * first and that IEND ends it; throws an Error saying what is wrong otherwise.
 */
export function readPngInfo(buf: Buffer): PngInfo {
  if (buf.length < SIGNATURE.length || !buf.subarray(0, 8).equals(SIGNATURE)) throw new Error('not a PNG file: the 8-byte PNG signature is missing');
  let pos = 8;
  let width = 0;
  let height = 0;
  let sawEnd = false;
  const text: Record<string, string> = {};
  while (pos < buf.length) {
    if (pos + 12 > buf.length) throw new Error(`not a valid PNG: truncated chunk header at byte ${pos}`);
    const length = buf.readUInt32BE(pos);
    const type = buf.toString('latin1', pos + 4, pos + 8);
    if (!/^[A-Za-z]{4}$/.test(type)) throw new Error(`not a valid PNG: bad chunk type at byte ${pos}`);
    const end = pos + 12 + length;
    if (end > buf.length) throw new Error(`not a valid PNG: the ${type} chunk at byte ${pos} is truncated (${length} bytes announced)`);
    const crc = buf.readUInt32BE(pos + 8 + length);
    if (zlib.crc32(buf.subarray(pos + 4, pos + 8 + length)) !== crc) throw new Error(`not a valid PNG: CRC mismatch in the ${type} chunk at byte ${pos}`);
    const data = buf.subarray(pos + 8, pos + 8 + length);
    if (pos === 8) {
      if (type !== 'IHDR' || length !== 13) throw new Error('not a valid PNG: the first chunk is not a 13-byte IHDR');
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      if (width === 0 || height === 0) throw new Error(`not a valid PNG: zero size ${width}x${height}`);
    } else if (type === 'tEXt' || type === 'zTXt' || type === 'iTXt') {
      const entry = readText(type, data);
      if (entry) text[entry[0]] = entry[1];
    } else if (type === 'IEND') {
      sawEnd = true;
      break;
    }
    pos = end;
  }
  if (pos === 8) throw new Error('not a valid PNG: no chunks after the signature');
  if (!sawEnd) throw new Error('not a valid PNG: no IEND chunk (the file is truncated)');
  return { width, height, text };
}
