// A fake camera for Chromium that films the phone's own QR code: the phone page draws its QR
// image on a canvas, and the grey levels become a looping Y4M video (Chromium's
// --use-file-for-fake-video-capture), so the tablet scans exactly what the phone shows.
import { writeFileSync } from "node:fs";

const WIDTH = 640;
const HEIGHT = 480;
const FRAMES = 5;

/** The phone's QR image as grey levels (WIDTH x HEIGHT, one byte a pixel, base64). */
async function qrGreys(phone, selector) {
  return phone.locator(selector).evaluate(
    async (img, [width, height]) => {
      await img.decode();
      const canvas = document.createElement("canvas");
      canvas.width = width;
      canvas.height = height;
      const context = canvas.getContext("2d");
      context.fillStyle = "#fff";
      context.fillRect(0, 0, width, height);
      const side = Math.min(width, height) - 80; // a quiet margin around the code, as on a screen
      context.drawImage(img, (width - side) / 2, (height - side) / 2, side, side);
      const rgba = context.getImageData(0, 0, width, height).data;
      let grey = "";
      for (let i = 0; i < rgba.length; i += 4) grey += String.fromCharCode(Math.round(0.299 * rgba[i] + 0.587 * rgba[i + 1] + 0.114 * rgba[i + 2]));
      return btoa(grey);
    },
    [WIDTH, HEIGHT],
  );
}

/** Write `path` (.y4m): the QR the phone shows in `selector`, still, a few frames, 4:2:0 grey. */
export async function filmQr(phone, selector, path) {
  const luma = Buffer.from(await qrGreys(phone, selector), "base64");
  if (luma.length !== WIDTH * HEIGHT) throw new Error(`expected ${WIDTH * HEIGHT} grey levels, got ${luma.length}`);
  const chroma = Buffer.alloc((WIDTH / 2) * (HEIGHT / 2), 128); // no colour
  const frame = Buffer.concat([Buffer.from("FRAME\n"), luma, chroma, chroma]);
  const header = Buffer.from(`YUV4MPEG2 W${WIDTH} H${HEIGHT} F10:1 Ip A1:1 C420jpeg\n`);
  writeFileSync(path, Buffer.concat([header, ...Array(FRAMES).fill(frame)]));
}
