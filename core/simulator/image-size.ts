/**
 * The pixel size of an uploaded image, without decoding it: the simulator only needs the size to
 * carry through LoadImage -> VAEEncode -> ... -> SaveImage, as a real box would.
 */

export interface ImageSize {
  width: number;
  height: number;
}

/** The size a file we cannot read counts as (ComfyUI would fail; the simulator carries on). */
export const FALLBACK_SIZE: ImageSize = { width: 512, height: 512 };

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function pngSize(buf: Buffer): ImageSize | undefined {
  if (buf.length < 24 || !buf.subarray(0, 8).equals(PNG_SIGNATURE) || buf.toString('latin1', 12, 16) !== 'IHDR') return undefined;
  return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) };
}

/** Walks JPEG markers to the first start-of-frame (SOF0..SOF15 except DHT, JPG and DAC). */
function jpegSize(buf: Buffer): ImageSize | undefined {
  if (buf.length < 4 || buf[0] !== 0xff || buf[1] !== 0xd8) return undefined;
  let pos = 2;
  while (pos + 4 <= buf.length) {
    if (buf[pos] !== 0xff) return undefined;
    const marker = buf[pos + 1]!;
    if (marker === 0xff) {
      pos++; // fill byte
      continue;
    }
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      pos += 2; // markers without a length
      continue;
    }
    const length = buf.readUInt16BE(pos + 2);
    const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isSof) {
      if (pos + 9 > buf.length) return undefined;
      return { height: buf.readUInt16BE(pos + 5), width: buf.readUInt16BE(pos + 7) };
    }
    if (marker === 0xd9 || marker === 0xda) return undefined; // end of image or scan data before any frame
    pos += 2 + length;
  }
  return undefined;
}

/** The size of a PNG or JPEG; FALLBACK_SIZE for anything else or a file too broken to tell. */
export function imageSize(buf: Buffer): ImageSize {
  const size = pngSize(buf) ?? jpegSize(buf);
  return size && size.width > 0 && size.height > 0 ? size : FALLBACK_SIZE;
}
