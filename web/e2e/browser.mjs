// Starts Debian's Chromium for the end-to-end tests: headless, with a fake
// camera and microphone, and WebRTC allowed to use loopback candidates so
// every ICE pair the tests use stays on 127.0.0.1.
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.BUILDSTREAM_CHROMIUM || "/usr/bin/chromium";

export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic",
      "--use-fake-device-for-media-stream",
      "--use-fake-ui-for-media-stream",
      "--allow-loopback-in-peer-connection",
      // Test pages are fulfilled by the test, not fetched, so Chromium puts
      // them in no address space and would ask before they call loopback.
      "--disable-features=WebRtcHideLocalIpsWithMdns,LocalNetworkAccessChecks",
    ],
  });
}

/// Opens `html` as a page of the origin `base` (a loopback HTTP address, so
/// the page is a secure context), without the server having to serve it.
export async function openPage(browser, base, html) {
  const context = await browser.newContext({ permissions: ["camera", "microphone"] });
  const page = await context.newPage();
  page.on("console", (msg) => console.error(`[page] ${msg.text()}`));
  page.on("pageerror", (err) => console.error(`[page error] ${err.message}`));
  const url = `${base.replace(/\/$/, "")}/__e2e_page`;
  await page.route(url, (route) => route.fulfill({ status: 200, contentType: "text/html", body: html }));
  await page.goto(url);
  return page;
}
