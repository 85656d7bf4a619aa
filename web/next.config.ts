import type { NextConfig } from "next";

const config: NextConfig = {
  // The app is served by `next start` locally and by any Node host when deployed; nothing
  // about it depends on a platform.
  reactStrictMode: true,
  poweredByHeader: false,
  // Next's telemetry and its font and image services would reach out to the network.
  images: { unoptimized: true },
};

export default config;
