import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// `npm run dev` proxies the API to a bridge on :8000; `npm run build` writes dist/, which the bridge serves at /.
export default defineConfig({
  plugins: [react()],
  server: {
    proxy: { "/api": "http://127.0.0.1:8000", "/static": "http://127.0.0.1:8000", "/healthz": "http://127.0.0.1:8000" },
  },
  test: { environment: "jsdom", globals: true },
});
