import { defineConfig } from "vite";

// `npm run build` writes the app to dist/, which the control plane serves at
// `/`. `npx vite` serves it with hot reload and sends the API to a running
// `buildstream dev`.
export default defineConfig({
  build: { outDir: "dist", emptyOutDir: true, sourcemap: true },
  server: {
    proxy: { "/api": "http://127.0.0.1:8080" },
  },
});
