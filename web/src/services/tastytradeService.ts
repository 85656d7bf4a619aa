/**
 * Every tastysync API call about linked tastytrade accounts and their synced data. Each
 * answers a `Result`: the data, or an `ApiError` the page can show or act on.
 */
import { call, type Api, type Schemas } from "@/api/client";
import type { Result } from "@/lib/errors";

export type Environment = Schemas["Environment"];
export type Account = Schemas["TastyTradeAccountRead"];
export type AccountDetail = Schemas["AccountDetail"];
export type Transaction = Schemas["TransactionRead"];
export type TransactionPage = Schemas["TransactionPage"];
export type Order = Schemas["OrderRead"];
export type OrderPage = Schemas["OrderPage"];
export type Position = Schemas["PositionRead"];
export type Balance = Schemas["BalanceRead"];
export type BalanceHistory = Schemas["BalanceHistory"];
export type LinkStart = Schemas["LinkStartResponse"];

export type TransactionFilters = {
  from?: string;
  to?: string;
  symbol?: string;
  underlying_symbol?: string;
  type?: string;
  sub_type?: string;
};

export type OrderFilters = {
  status?: string;
  from?: string;
  to?: string;
  underlying_symbol?: string;
};

export type Page = { cursor?: string; limit?: number };

export type HistoryRange = { from?: string; to?: string; currency?: string; points?: number };

/**
 * The API refuses unknown and empty parameters alike (400), so a filter left blank in a form
 * is left out of the query rather than sent empty.
 */
export function definedOnly<T extends Record<string, string | number | undefined>>(query: T): Partial<T> {
  const kept: Partial<T> = {};
  for (const [key, value] of Object.entries(query) as [keyof T, T[keyof T]][]) {
    if (value !== undefined && value !== "") kept[key] = value;
  }
  return kept;
}

export function createTastytradeService(api: Api) {
  const account = (id: string) => ({ path: { account_db_id: id } });
  return {
    /** Starts the authorization-code flow: send the browser to `authorize_url`. */
    startLink(environment: Environment, redirectUri: string): Promise<Result<LinkStart>> {
      return call(
        api.POST("/tastytrade-accounts/link/start", {
          body: { environment, redirect_uri: redirectUri },
        }),
      );
    },

    /** Finishes the code flow with what tastytrade sent back to the callback. */
    linkWithCode(link: {
      environment: Environment;
      code: string;
      state: string;
      redirectUri: string;
    }): Promise<Result<Account[]>> {
      return call(
        api.POST("/tastytrade-accounts/link", {
          body: {
            environment: link.environment,
            code: link.code,
            state: link.state,
            redirect_uri: link.redirectUri,
          },
        }),
      );
    },

    /** Links a personal grant. The secrets go to the API and nowhere else. */
    linkPersonalGrant(grant: {
      environment: Environment;
      refreshToken: string;
      clientSecret: string;
    }): Promise<Result<Account[]>> {
      return call(
        api.POST("/tastytrade-accounts/link", {
          body: {
            environment: grant.environment,
            refresh_token: grant.refreshToken,
            client_secret: grant.clientSecret,
          },
        }),
      );
    },

    listAccounts(): Promise<Result<Account[]>> {
      return call(api.GET("/tastytrade-accounts"));
    },

    getAccount(id: string): Promise<Result<AccountDetail>> {
      return call(api.GET("/tastytrade-accounts/{account_db_id}", { params: account(id) }));
    },

    unlink(id: string): Promise<Result<void>> {
      return call(api.DELETE("/tastytrade-accounts/{account_db_id}", { params: account(id) })) as Promise<
        Result<void>
      >;
    },

    transactions(id: string, filters: TransactionFilters, page: Page = {}): Promise<Result<TransactionPage>> {
      return call(
        api.GET("/tastytrade-accounts/{account_db_id}/transactions", {
          params: { ...account(id), query: definedOnly({ ...filters, ...page }) },
        }),
      );
    },

    orders(id: string, filters: OrderFilters, page: Page = {}): Promise<Result<OrderPage>> {
      return call(
        api.GET("/tastytrade-accounts/{account_db_id}/orders", {
          params: { ...account(id), query: definedOnly({ ...filters, ...page }) },
        }),
      );
    },

    positions(id: string): Promise<Result<Position[]>> {
      return call(api.GET("/tastytrade-accounts/{account_db_id}/positions", { params: account(id) }));
    },

    balances(id: string): Promise<Result<Balance[]>> {
      return call(api.GET("/tastytrade-accounts/{account_db_id}/balances", { params: account(id) }));
    },

    balanceHistory(id: string, range: HistoryRange = {}): Promise<Result<BalanceHistory>> {
      return call(
        api.GET("/tastytrade-accounts/{account_db_id}/balance-history", {
          params: { ...account(id), query: definedOnly(range) },
        }),
      );
    },
  };
}

export type TastytradeService = ReturnType<typeof createTastytradeService>;
