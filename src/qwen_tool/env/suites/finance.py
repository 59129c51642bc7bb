"""Finance: stock quotes, FX, accounts and transfers, trade orders (stateful)."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from qwen_tool.env.suite import Suite, tool_method
from qwen_tool.env.suites._common import call, make_task, next_id
from qwen_tool.env.task import Task

TICKERS = ["NOVA", "QBIT", "HELX", "TRAM", "ZEPH", "ORCA", "LUMN", "VOLT"]
CURRENCIES = ["USD", "EUR", "GBP", "JPY", "CHF", "NOK"]
ACCOUNTS = ["ACC-1001", "ACC-1002", "ACC-1003"]


class TradeOrder(TypedDict):
    ticker: str
    side: Literal["buy", "sell"]
    quantity: int
    order_type: Literal["market", "limit"]
    limit_price: NotRequired[float]


class FinanceSuite(Suite):
    name = "finance"
    domain = "finance"
    description = "Simulated brokerage and bank: quotes, FX, balances, transfers, orders."

    def setup(self) -> None:
        self.data["prices"] = {t: round(self.rng.uniform(5, 500), 2) for t in TICKERS}
        self.data["usd_per_unit"] = {"USD": 1.0, **{c: round(self.rng.uniform(0.005, 1.5), 4) for c in CURRENCIES[1:]}}
        self.data["balances"] = {a: round(self.rng.uniform(100, 10000), 2) for a in ACCOUNTS}
        self.data["orders"] = {}
        self.data["transfers"] = []

    def _price(self, ticker: str) -> float:
        if ticker not in self.data["prices"]:
            raise ValueError(f"unknown ticker '{ticker}'; known: {', '.join(TICKERS)}")
        return self.data["prices"][ticker]

    def _rate(self, base: str, quote: str) -> float:
        table = self.data["usd_per_unit"]
        for code in (base, quote):
            if code not in table:
                raise ValueError(f"unsupported currency '{code}'; supported: {', '.join(CURRENCIES)}")
        return round(table[base] / table[quote], 6)

    @tool_method
    def fetch_stock_quote(self, ticker: str) -> dict[str, Any]:
        """Latest price of one stock.

        Args:
            ticker: Stock symbol, e.g. "NOVA".
        """
        return {"ticker": ticker, "price": self._price(ticker), "currency": "USD"}

    @tool_method
    def fetch_stock_quotes(self, tickers: list[str]) -> dict[str, float]:
        """Latest prices of several stocks at once.

        Args:
            tickers: Stock symbols.
        """
        return {t: self._price(t) for t in tickers}

    @tool_method
    def lookup_fx_rate(self, base: str, quote: str) -> dict[str, Any]:
        """Exchange rate: how many units of `quote` one unit of `base` buys.

        Args:
            base: ISO currency code, e.g. "EUR".
            quote: ISO currency code, e.g. "JPY".
        """
        return {"base": base, "quote": quote, "rate": self._rate(base, quote)}

    @tool_method
    def exchange_amount(self, amount: float, from_currency: str, to_currency: str) -> dict[str, Any]:
        """Convert an amount of money between currencies.

        Args:
            amount: Amount in from_currency.
            from_currency: ISO code of the amount.
            to_currency: ISO code to convert into.
        """
        return {"amount": round(amount * self._rate(from_currency, to_currency), 2), "currency": to_currency}

    @tool_method
    def check_account_balance(self, account_id: str) -> dict[str, Any]:
        """Balance of a bank account (USD).

        Args:
            account_id: Account id, e.g. "ACC-1001".
        """
        if account_id not in self.data["balances"]:
            raise KeyError(f"no account '{account_id}'")
        return {"account_id": account_id, "balance": self.data["balances"][account_id]}

    @tool_method
    def move_funds(self, from_account: str, to_account: str, amount: float, memo: str | None = None) -> dict[str, Any]:
        """Transfer money between two accounts.

        Args:
            from_account: Paying account id.
            to_account: Receiving account id.
            amount: Positive amount in USD.
            memo: Optional note.
        """
        balances = self.data["balances"]
        for account in (from_account, to_account):
            if account not in balances:
                raise KeyError(f"no account '{account}'")
        if amount <= 0 or amount > balances[from_account]:
            raise ValueError(f"amount must be positive and at most the balance {balances[from_account]}")
        balances[from_account] = round(balances[from_account] - amount, 2)
        balances[to_account] = round(balances[to_account] + amount, 2)
        transfer_id = next_id(self.data, "TRF")
        self.data["transfers"].append({"id": transfer_id, "from": from_account, "to": to_account, "amount": amount,
                                       "memo": memo})
        return {"transfer_id": transfer_id, "status": "completed"}

    @tool_method
    def submit_trade_order(self, order: TradeOrder) -> dict[str, Any]:
        """Place a buy or sell order; limit orders need a limit_price.

        Args:
            order: The order.
        """
        self._price(order["ticker"])
        if order["quantity"] <= 0:
            raise ValueError("quantity must be positive")
        if order["order_type"] == "limit" and "limit_price" not in order:
            raise ValueError("a limit order needs limit_price")
        order_id = next_id(self.data, "ORD")
        self.data["orders"][order_id] = {**order, "status": "open"}
        return {"order_id": order_id, "status": "open"}

    @tool_method
    def withdraw_trade_order(self, order_id: str) -> dict[str, Any]:
        """Cancel an open trade order.

        Args:
            order_id: Id returned by submit_trade_order.
        """
        order = self.data["orders"].get(order_id)
        if order is None or order["status"] != "open":
            raise ValueError(f"no open order '{order_id}'")
        order["status"] = "cancelled"
        return {"order_id": order_id, "status": "cancelled"}

    @tool_method
    def list_trade_orders(self, status: Literal["open", "cancelled"] | None = None) -> dict[str, Any]:
        """Trade orders by id, optionally filtered by status.

        Args:
            status: Only orders with this status.
        """
        return {k: v for k, v in self.data["orders"].items() if status is None or v["status"] == status}

    def argument_pool(self) -> dict[str, list[Any]]:
        return {"ticker": TICKERS, "tickers": [TICKERS[:2], TICKERS[3:6]], "base": CURRENCIES, "quote": CURRENCIES,
                "from_currency": CURRENCIES, "to_currency": CURRENCIES, "account_id": ACCOUNTS,
                "from_account": ACCOUNTS, "to_account": ACCOUNTS, "amount": [10.0, 25.5, 100.0],
                "order_id": list(self.data["orders"]) or ["ORD-1001"],
                "order": [{"ticker": "NOVA", "side": "buy", "quantity": 10, "order_type": "market"}]}

    @classmethod
    def tasks(cls) -> list[Task]:
        return [
            make_task("finance", 0, "What are NOVA and QBIT trading at?",
                      [[call("fetch_stock_quotes", tickers=["NOVA", "QBIT"])]], "Here are both prices."),
            make_task("finance", 1, "Move 50 dollars from ACC-1001 to ACC-1002 for rent, then show ACC-1002's balance.",
                      [[call("move_funds", from_account="ACC-1001", to_account="ACC-1002", amount=50.0, memo="rent")],
                       [call("check_account_balance", account_id="ACC-1002")]], "Done; the new balance is shown."),
            make_task("finance", 2, "Buy 5 ORCA with a limit of 120, then cancel that order.",
                      [[call("submit_trade_order", order={"ticker": "ORCA", "side": "buy", "quantity": 5,
                                                          "order_type": "limit", "limit_price": 120.0})],
                       [call("withdraw_trade_order", order_id="ORD-1001")]], "The order was placed and cancelled."),
        ]
