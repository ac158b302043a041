/**
 * core/comfy/png.ts: what encodePng writes decodes back to the same pixels and text, and
 * readPngInfo refuses broken files with a clear error.
 */
import { randomBytes } from 'node:crypto';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { encodePng, readPngInfo } from '../../core/simulator/png.js';
import { renderPixels } from '../../core/simulator/render.js';

/** Decodes an 8-bit RGB PNG's pixels (filters None, Sub and Up: the ones encodePng uses). */
function decodeRgb(png: Buffer): Buffer {
  const { width, height } = readPngInfo(png);
  const idat: Buffer[] = [];
  for (let pos = 8; pos < png.length; ) {
    const len = png.readUInt32BE(pos);
    if (png.toString('latin1', pos + 4, pos + 8) === 'IDAT') idat.push(png.subarray(pos + 8, pos + 8 + len));
    pos += 12 + len;
  }
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = width * 3;
  expect(raw.length).toBe((stride + 1) * height);
  const out = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!;
    for (let i = 0; i < stride; i++) {
      const v = raw[y * (stride + 1) + 1 + i]!;
      const left = i >= 3 ? out[y * stride + i - 3]! : 0;
      const up = y > 0 ? out[(y - 1) * stride + i]! : 0;
      if (filter === 0) out[y * stride + i] = v;
      else if (filter === 1) out[y * stride + i] = (v + left) & 0xff;
      else if (filter === 2) out[y * stride + i] = (v + up) & 0xff;
      else throw new Error(`unexpected filter ${filter}`);
    }
  }
  return out;
}

describe('encodePng / readPngInfo', () => {
  it('round-trips size, pixels and text chunks (latin-1 as tEXt, other text as iTXt)', () => {
    const width = 37;
    const height = 23;
    const rgb = randomBytes(width * height * 3);
    rgb.copy(rgb, 5 * width * 3, 4 * width * 3, 5 * width * 3); // a repeated row takes the Up filter
    const text = { prompt: '{"3": {"class_type": "KSampler"}}', workflow: 'café', note: 'emoji 🎨 and 日本語' };
    const png = encodePng(width, height, rgb, text);
    expect(readPngInfo(png)).toEqual({ width, height, text });
    expect(decodeRgb(png).equals(rgb)).toBe(true);
    expect(png.includes(Buffer.from('tEXtprompt'))).toBe(true);
    expect(png.includes(Buffer.from('iTXtnote'))).toBe(true);
  });

  it('writes no text chunks when given none, and refuses a wrong pixel buffer or size', () => {
    const png = encodePng(2, 2, Buffer.alloc(12, 200));
    expect(readPngInfo(png)).toEqual({ width: 2, height: 2, text: {} });
    expect(() => encodePng(2, 2, Buffer.alloc(11))).toThrow(/must be 12 bytes/);
    expect(() => encodePng(0, 2, Buffer.alloc(0))).toThrow(/positive integers/);
    expect(() => encodePng(1, 1, Buffer.alloc(3), { '': 'x' })).toThrow(/keyword/);
  });

  it('detects a corrupted chunk (CRC), a missing signature, truncation and a missing IEND', () => {
    const png = encodePng(16, 16, renderPixels('crc', 16, 16), { prompt: '{}' });
    const flipped = Buffer.from(png);
    const idatAt = flipped.indexOf(Buffer.from('IDAT'));
    flipped[idatAt + 6]! ^= 0x01;
    expect(() => readPngInfo(flipped)).toThrow(/CRC mismatch in the IDAT chunk/);
    const textFlipped = Buffer.from(png);
    textFlipped[textFlipped.indexOf(Buffer.from('tEXt')) + 5]! ^= 0x20;
    expect(() => readPngInfo(textFlipped)).toThrow(/CRC mismatch in the tEXt chunk/);
    expect(() => readPngInfo(Buffer.from('GIF89a not a png at all'))).toThrow(/signature/);
    expect(() => readPngInfo(png.subarray(0, png.length - 20))).toThrow(/truncated/);
    expect(() => readPngInfo(png.subarray(0, png.length - 12))).toThrow(/no IEND/);
  });

  it('encodes a simulated 512x512 picture quickly (target: well under 100 ms)', () => {
    let best = Infinity;
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const png = encodePng(512, 512, renderPixels(`speed ${i}`, 512, 512), { prompt: '{}' });
      best = Math.min(best, performance.now() - t0);
      expect(readPngInfo(png)).toMatchObject({ width: 512, height: 512 });
    }
    // Generous bound: test machines run several suites at once. Idle, this is ~10-20 ms.
    expect(best).toBeLessThan(250);
  });
});
