// The tablet's in-page QR scanner: the camera's frames go to the browser's BarcodeDetector where
// it has one, else to jsQR (static/vendor/jsQR.js, from npm, loaded only when needed).

const SCAN_EVERY_MS = 150;
/** A scan gives up after this long: the camera is not left running on a shared tablet. */
export const SCAN_LIMIT_MS = 60_000;

let jsQRLoaded = null;

function loadJsQR() {
  jsQRLoaded ??= new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = "/static/vendor/jsQR.js";
    script.onload = () => resolve(globalThis.jsQR);
    script.onerror = () => reject(new Error("the QR decoder did not load"));
    document.head.append(script);
  });
  return jsQRLoaded;
}

/** A function that reads a QR's text from a video frame, or null: the best the browser has. */
async function qrReader(video) {
  if ("BarcodeDetector" in globalThis) {
    const formats = await globalThis.BarcodeDetector.getSupportedFormats().catch(() => []);
    if (formats.includes("qr_code")) {
      const detector = new globalThis.BarcodeDetector({ formats: ["qr_code"] });
      video.dataset.reader = "BarcodeDetector";
      return async (frame) => (await detector.detect(frame))[0]?.rawValue ?? null;
    }
  }
  const jsQR = await loadJsQR();
  video.dataset.reader = "jsQR";
  const canvas = document.createElement("canvas");
  const context = canvas.getContext("2d", { willReadFrequently: true });
  return async (video) => {
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    if (!canvas.width || !canvas.height) return null;
    context.drawImage(video, 0, 0);
    const image = context.getImageData(0, 0, canvas.width, canvas.height);
    return jsQR(image.data, image.width, image.height, { inversionAttempts: "dontInvert" })?.data ?? null;
  };
}

/**
 * Show the back camera in `video` until a QR whose text `accept(text)` takes is seen; resolves
 * with that text, or null when `signal` aborts or SCAN_LIMIT_MS pass. The camera stops either way.
 */
export async function scanQr(video, accept, signal) {
  const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
  try {
    video.srcObject = stream;
    await video.play();
    const read = await qrReader(video);
    const until = Date.now() + SCAN_LIMIT_MS;
    while (!signal.aborted && Date.now() < until) {
      const text = await read(video).catch(() => null);
      if (text && accept(text)) return text;
      await new Promise((resolve) => setTimeout(resolve, SCAN_EVERY_MS));
    }
    return null;
  } finally {
    for (const track of stream.getTracks()) track.stop();
    video.srcObject = null;
  }
}
