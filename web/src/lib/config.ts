/** What the app needs to know about its deployment, read on the server at request time. */
export type AppConfig = {
  /** The tastysync API's origin (the `/api/v1` prefix is added by the client). */
  apiUrl: string;
  /** `dev`: the local gateway's dev tokens for `devUser`; `provider`: the app's identity provider. */
  auth: { kind: "dev"; devUser: string } | { kind: "provider" };
  /** What unlinking does with synced rows: the deployment's `UNLINK_SYNCED_DATA`. */
  unlinkSyncedData: "keep" | "purge";
};

export function configFromEnv(env: Record<string, string | undefined>): AppConfig {
  const apiUrl = (env.TASTYSYNC_API_URL ?? "http://127.0.0.1:8787").replace(/\/+$/, "");
  const auth: AppConfig["auth"] =
    (env.TASTYSYNC_AUTH ?? "dev") === "dev"
      ? { kind: "dev", devUser: env.TASTYSYNC_DEV_USER ?? "dev-user" }
      : { kind: "provider" };
  return { apiUrl, auth, unlinkSyncedData: env.UNLINK_SYNCED_DATA === "purge" ? "purge" : "keep" };
}
