/**
 * The simulator's "generated" pictures: a smooth gradient, a soft wave and a few discs whose
 * colours and places come from a hash of what made the image (seed, prompt text, batch index...).
 * Different seeds or prompts give visibly different images; the same inputs give the same bytes.
 * Cheap on purpose, so a 512x512 image renders and encodes in milliseconds: colours are
 * posterised to 32 levels and rows come in identical pairs, which deflate squeezes fast.
 */
import { createHash } from 'node:crypto';

/** A deterministic stream of numbers in [0, 1) from a string (mulberry32 seeded by sha256). */
function randomFrom(key: string): () => number {
  let state = createHash('sha256').update(key).digest().readUInt32LE(0);
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rgb = [number, number, number];

function colour(rand: () => number): Rgb {
  return [rand() * 255, rand() * 255, rand() * 255];
}

interface Disc {
  x: number;
  y: number;
  r2: number;
  colour: Rgb;
  alpha: number;
}

/** width*height*3 bytes of RGB, rows top to bottom. */
export function renderPixels(key: string, width: number, height: number): Buffer {
  const rand = randomFrom(key);
  const from = colour(rand);
  const to = colour(rand);
  const waveColour = colour(rand);
  const angle = rand() * Math.PI * 2;
  const ca = Math.cos(angle);
  const sa = Math.sin(angle);
  const freq = 4 + rand() * 14;
  const phase = rand() * Math.PI * 2;
  const tilt = (rand() - 0.5) * 8;
  const discs: Disc[] = [];
  for (let n = 3 + Math.floor(rand() * 3); n > 0; n--) {
    const r = 0.05 + rand() * 0.2;
    discs.push({ x: rand(), y: rand(), r2: r * r, colour: colour(rand), alpha: 0.5 + rand() * 0.5 });
  }
  // Normalised coordinates (the longer side is 1) so a scaled image shows the same picture.
  const scale = 1 / Math.max(width, height);
  const out = Buffer.allocUnsafe(width * height * 3);
  let o = 0;
  const stride = width * 3;
  for (let y = 0; y < height; y++) {
    if (y % 2 === 1) {
      out.copy(out, o, o - stride, o); // the odd row repeats the even one
      o += stride;
      continue;
    }
    const ny = y * scale;
    for (let x = 0; x < width; x++) {
      const nx = x * scale;
      const t = Math.min(1, Math.max(0, 0.5 + (nx - 0.5) * ca + (ny - 0.5) * sa));
      const w = 0.3 * (0.5 + 0.5 * Math.sin(nx * freq + ny * tilt + phase));
      let r = from[0] + (to[0] - from[0]) * t;
      let g = from[1] + (to[1] - from[1]) * t;
      let b = from[2] + (to[2] - from[2]) * t;
      r += (waveColour[0] - r) * w;
      g += (waveColour[1] - g) * w;
      b += (waveColour[2] - b) * w;
      for (const d of discs) {
        const dx = nx - d.x;
        const dy = ny - d.y;
        const q = (dx * dx + dy * dy) / d.r2;
        if (q < 1) {
          const a = d.alpha * (1 - q * q); // soft edge
          r += (d.colour[0] - r) * a;
          g += (d.colour[1] - g) * a;
          b += (d.colour[2] - b) * a;
        }
      }
      out[o++] = r & 0xf8;
      out[o++] = g & 0xf8;
      out[o++] = b & 0xf8;
    }
  }
  return out;
}
