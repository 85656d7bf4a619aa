import type { Metadata, Viewport } from "next";
import type { ReactNode } from "react";
import { configFromEnv } from "@/lib/config";
import { ServicesProvider } from "@/lib/services";
import "./globals.css";

export const metadata: Metadata = {
  title: "tastysync",
  description: "Your tastytrade accounts, synced.",
};

export const viewport: Viewport = { width: "device-width", initialScale: 1 };

// The API's address and the auth mode are read when a page is served, so one build serves
// every environment.
export const dynamic = "force-dynamic";

export default function RootLayout({ children }: { children: ReactNode }) {
  const config = configFromEnv(process.env);
  return (
    <html lang="en">
      <body>
        <ServicesProvider config={config}>{children}</ServicesProvider>
      </body>
    </html>
  );
}
