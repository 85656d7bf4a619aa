"use client";

import { createContext, useContext, useMemo, type ReactNode } from "react";
import { createApi } from "@/api/client";
import { devTokenProvider, type TokenProvider } from "@/lib/auth";
import type { AppConfig } from "@/lib/config";
import { createSyncService, type SyncService } from "@/services/syncService";
import { createTastytradeService, type TastytradeService } from "@/services/tastytradeService";

type Services = { config: AppConfig; tastytrade: TastytradeService; sync: SyncService };

const ServicesContext = createContext<Services | null>(null);

let providerOverride: TokenProvider | null = null;

/**
 * The deployed app's identity provider, registered once before the first render (for example
 * in a client module the root layout imports): `registerTokenProvider(fromSession(...))`.
 */
export function registerTokenProvider(provider: TokenProvider): void {
  providerOverride = provider;
}

function tokenProvider(config: AppConfig): TokenProvider {
  if (config.auth.kind === "dev") return devTokenProvider(config.apiUrl, config.auth.devUser);
  if (providerOverride) return providerOverride;
  return { token: async () => null };
}

/** Builds the API client and the two services once for the whole app. */
export function ServicesProvider({ config, children }: { config: AppConfig; children: ReactNode }) {
  const services = useMemo(() => {
    const api = createApi(config.apiUrl, tokenProvider(config));
    return { config, tastytrade: createTastytradeService(api), sync: createSyncService(api) };
  }, [config]);
  return <ServicesContext.Provider value={services}>{children}</ServicesContext.Provider>;
}

export function useServices(): Services {
  const services = useContext(ServicesContext);
  if (!services) throw new Error("useServices outside ServicesProvider");
  return services;
}
