"""Shopping: catalogue search, cart, coupons, checkout, order status and shipment tracking (stateful)."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from qwen_tool.env.suite import Suite, tool_method
from qwen_tool.env.suites._common import call, make_task, next_id
from qwen_tool.env.task import Task

Category = Literal["electronics", "books", "kitchen", "outdoor", "toys"]
PRODUCTS = [("Trail backpack", "outdoor"), ("Camping stove", "outdoor"), ("Noise-cancelling headphones", "electronics"),
            ("USB-C charger", "electronics"), ("Cast iron pan", "kitchen"), ("Chef knife", "kitchen"),
            ("Puzzle 1000 pieces", "toys"), ("Sci-fi novel", "books"), ("Cookbook", "books"), ("Headlamp", "outdoor")]
COUPONS = {"SAVE10": 0.10, "WELCOME5": 0.05}


class Address(TypedDict):
    street: str
    city: str
    postal_code: str
    country: str


class ShoppingSuite(Suite):
    name = "shopping"
    domain = "shopping orders"
    description = "Simulated web shop: products, cart, checkout, orders."

    def setup(self) -> None:
        self.data["products"] = {
            f"P{100 + i}": {"name": name, "category": cat, "price": round(self.rng.uniform(5, 300), 2),
                            "stock": self.rng.randint(1, 20)}
            for i, (name, cat) in enumerate(PRODUCTS)
        }
        self.data["cart"] = {}
        self.data["coupon"] = None
        self.data["orders"] = {}

    def _product(self, product_id: str) -> dict[str, Any]:
        if product_id not in self.data["products"]:
            raise KeyError(f"no product '{product_id}'")
        return self.data["products"][product_id]

    def _order(self, order_id: str) -> dict[str, Any]:
        if order_id not in self.data["orders"]:
            raise KeyError(f"no order '{order_id}'")
        return self.data["orders"][order_id]

    @tool_method
    def find_products(self, query: str, category: Category | None = None,
                      max_price: float | None = None) -> list[dict[str, Any]]:
        """Products whose name contains the query.

        Args:
            query: Words to look for (case-insensitive); empty matches all.
            category: Only this category.
            max_price: Only products at or below this price.
        """
        return [{"product_id": pid, **p} for pid, p in self.data["products"].items()
                if query.lower() in p["name"].lower() and (category is None or p["category"] == category)
                and (max_price is None or p["price"] <= max_price)]

    @tool_method
    def product_info(self, product_id: str) -> dict[str, Any]:
        """Details of a product.

        Args:
            product_id: Product id, e.g. "P100".
        """
        return {"product_id": product_id, **self._product(product_id)}

    @tool_method
    def cart_add_item(self, product_id: str, quantity: int = 1) -> dict[str, Any]:
        """Put a product in the cart.

        Args:
            product_id: Product id.
            quantity: How many (within stock).
        """
        product = self._product(product_id)
        wanted = self.data["cart"].get(product_id, 0) + quantity
        if quantity < 1 or wanted > product["stock"]:
            raise ValueError(f"quantity must be 1..{product['stock'] - self.data['cart'].get(product_id, 0)}")
        self.data["cart"][product_id] = wanted
        return {"cart": self.data["cart"]}

    @tool_method
    def cart_remove_item(self, product_id: str) -> dict[str, Any]:
        """Take a product out of the cart.

        Args:
            product_id: Product id.
        """
        if self.data["cart"].pop(product_id, None) is None:
            raise KeyError(f"'{product_id}' is not in the cart")
        return {"cart": self.data["cart"]}

    @tool_method
    def cart_summary(self) -> dict[str, Any]:
        """Cart lines, coupon and total."""
        lines = [{"product_id": pid, "quantity": q, "subtotal": round(q * self.data["products"][pid]["price"], 2)}
                 for pid, q in self.data["cart"].items()]
        total = sum(line["subtotal"] for line in lines) * (1 - COUPONS.get(self.data["coupon"] or "", 0))
        return {"lines": lines, "coupon": self.data["coupon"], "total": round(total, 2)}

    @tool_method
    def redeem_coupon(self, code: str) -> dict[str, Any]:
        """Apply a discount code to the cart.

        Args:
            code: Coupon code.
        """
        if code not in COUPONS:
            raise ValueError(f"coupon '{code}' is not valid")
        self.data["coupon"] = code
        return {"coupon": code, "discount": COUPONS[code]}

    @tool_method
    def checkout_cart(self, shipping_address: Address,
                      payment_method: Literal["card", "paypal", "gift_card"]) -> dict[str, Any]:
        """Order everything in the cart.

        Args:
            shipping_address: Where to ship.
            payment_method: How to pay.
        """
        if not self.data["cart"]:
            raise ValueError("the cart is empty")
        summary = self.cart_summary()
        for pid, quantity in self.data["cart"].items():
            self.data["products"][pid]["stock"] -= quantity
        order_id = next_id(self.data, "SO")
        self.data["orders"][order_id] = {"items": dict(self.data["cart"]), "total": summary["total"],
                                         "address": dict(shipping_address), "payment": payment_method,
                                         "status": "processing"}
        self.data["cart"], self.data["coupon"] = {}, None
        return {"order_id": order_id, "total": summary["total"], "status": "processing"}

    @tool_method
    def shop_order_status(self, order_id: str) -> dict[str, Any]:
        """Status of an order.

        Args:
            order_id: Order id, e.g. "SO-1001".
        """
        return {"order_id": order_id, "status": self._order(order_id)["status"]}

    @tool_method
    def shop_cancel_order(self, order_id: str, reason: str | None = None) -> dict[str, Any]:
        """Cancel an order that has not shipped; stock is returned.

        Args:
            order_id: Order id.
            reason: Why (optional).
        """
        order = self._order(order_id)
        if order["status"] != "processing":
            raise ValueError(f"order '{order_id}' is {order['status']} and cannot be cancelled")
        for pid, quantity in order["items"].items():
            self.data["products"][pid]["stock"] += quantity
        order["status"], order["cancel_reason"] = "cancelled", reason
        return {"order_id": order_id, "status": "cancelled"}

    @tool_method
    def shop_track_package(self, order_id: str) -> dict[str, Any]:
        """Shipment tracking of an order.

        Args:
            order_id: Order id.
        """
        order = self._order(order_id)
        stage = {"processing": "label created", "cancelled": "no shipment"}.get(order["status"], "in transit")
        return {"order_id": order_id, "tracking": stage, "city": order["address"]["city"]}

    def argument_pool(self) -> dict[str, list[Any]]:
        return {"product_id": list(self.data["products"]), "query": ["pan", "charger", "novel"], "code": list(COUPONS),
                "order_id": list(self.data["orders"]) or ["SO-1001"], "quantity": [1, 2],
                "shipping_address": [{"street": "1 Main St", "city": "Porto", "postal_code": "4000", "country": "PT"}]}

    @classmethod
    def tasks(cls) -> list[Task]:
        address = {"street": "1 Main St", "city": "Porto", "postal_code": "4000", "country": "PT"}
        return [
            make_task("shopping", 0, "Find kitchen items under 200.",
                      [[call("find_products", query="", category="kitchen", max_price=200.0)]], "Here they are."),
            make_task("shopping", 1, "Add one USB-C charger (P103) to my cart, use SAVE10 and check out by card to "
                      "1 Main St, Porto 4000, PT.",
                      [[call("cart_add_item", product_id="P103")], [call("redeem_coupon", code="SAVE10")],
                       [call("checkout_cart", shipping_address=address, payment_method="card")]],
                      "Ordered.", seed=3),
        ]
