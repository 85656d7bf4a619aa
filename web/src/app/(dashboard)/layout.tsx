import Link from "next/link";
import type { ReactNode } from "react";

export default function DashboardLayout({ children }: { children: ReactNode }) {
  return (
    <>
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <Link href="/settings/accounts" className="brand">
          tastysync
        </Link>
        <nav aria-label="Main">
          <Link href="/settings/accounts">Accounts</Link>
        </nav>
      </header>
      <main id="main" className="container">
        {children}
      </main>
    </>
  );
}
