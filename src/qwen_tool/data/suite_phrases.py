"""Words for the env's simulated suites: a task phrase per tool, optional-argument clauses, argument values, answers.

Task phrases are imperative verb phrases (they go into `unseen.phrase_request`'s wrappers) with a `{param}` slot for
each required parameter; optional parameters a query states are added as clauses. Every string value is written
verbatim, so the gold argument is always what the user said. Value makers widen the suites' small argument pools
(travellers, orders, meetings, ...); a made value that a tool rejects is simply redrawn by the planner.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

TASKS: dict[str, tuple[str, ...]] = {
    # weather
    "fetch_current_conditions": ("check the current weather in {city}", "tell me what the weather is like in {city}"),
    "fetch_forecast": ("get the forecast for {city}", "tell me the coming days' temperatures in {city}"),
    "fetch_forecasts": ("get the forecasts for {cities}", "show me the daily forecast for each of {cities}"),
    "list_active_alerts": ("list the active weather alerts", "show me which weather alerts are in effect"),
    "list_alert_subscriptions": ("show all my weather alert subscriptions", "list the alert subscriptions I have"),
    "lookup_air_quality": ("check the air quality in {city}", "tell me how clean the air is in {city}"),
    "lookup_uv_index": ("look up the UV index in {city}", "tell me how strong the UV is in {city}"),
    "subscribe_alerts": ("subscribe {contact} to {alert_types} alerts for {city}",
                         "sign {contact} up for {alert_types} alerts in {city}"),
    "unsubscribe_alerts": ("cancel the alert subscription {subscription_id}",
                           "stop the weather alerts of subscription {subscription_id}"),
    # finance
    "check_account_balance": ("check the balance of account {account_id}",
                              "tell me how much money is in {account_id}"),
    "exchange_amount": ("convert {amount} {from_currency} to {to_currency}",
                        "tell me what {amount} {from_currency} comes to in {to_currency}"),
    "fetch_stock_quote": ("get the latest price of {ticker}", "tell me what {ticker} is trading at"),
    "fetch_stock_quotes": ("get the latest prices of {tickers}", "tell me what {tickers} are trading at"),
    "list_trade_orders": ("list my trade orders", "show me the trade orders on my account"),
    "lookup_fx_rate": ("look up the {base} to {quote} exchange rate", "tell me how many {quote} one {base} buys"),
    "move_funds": ("transfer {amount} dollars from {from_account} to {to_account}",
                   "move {amount} USD from account {from_account} into {to_account}"),
    "submit_trade_order": ("place {order}", "submit {order}"),
    "withdraw_trade_order": ("cancel trade order {order_id}", "withdraw the order {order_id}"),
    # calendar
    "add_meeting_attendees": ("invite {attendees} to meeting {meeting_id}", "add {attendees} to {meeting_id}"),
    "fetch_meeting": ("show me the details of meeting {meeting_id}", "look up meeting {meeting_id}"),
    "find_open_slots": ("find free {duration_minutes}-minute slots on {date}",
                        "tell me when I have {duration_minutes} minutes free on {date}"),
    "list_meetings_on": ("list my meetings on {date}", "show me what's on my calendar for {date}"),
    "remove_meeting": ("delete meeting {meeting_id}", "remove {meeting_id} from my calendar"),
    "reschedule_meeting": ("change meeting {meeting_id} so that {changes}", "update {meeting_id}: {changes}"),
    "schedule_meeting": ("schedule '{title}' on {date} from {start} to {end}",
                         "book a meeting called {title} on {date}, {start} to {end}"),
    "schedule_meetings": ("schedule these meetings: {meetings}", "put these on my calendar: {meetings}"),
    # messaging
    "create_chat_group": ("create a group chat called {group_name} with {members}",
                          "start a group named {group_name} for {members}"),
    "erase_chat_message": ("delete message {message_id}", "erase the chat message {message_id}"),
    "fetch_conversation": ("show my conversation with {contact}", "pull up the latest messages with {contact}"),
    "find_chat_messages": ("search my messages for '{query}'", "find messages that mention {query}"),
    "list_address_book": ("show my address book", "list all my contacts"),
    "mark_messages_read": ("mark {message_ids} as read", "mark the messages {message_ids} read"),
    "save_new_contact": ("save {contact} as a new contact", "add {contact} to my contacts"),
    "send_chat_message": ("send {recipient} the message '{text}'", "text {recipient}: {text}"),
    "send_chat_messages": ("send '{text}' to {recipients}", "message {recipients} saying '{text}'"),
    # file system
    "copy_path": ("copy {source} to {destination}", "make a copy of {source} in {destination}"),
    "find_paths": ("find files matching {pattern}", "search for files named like {pattern}"),
    "list_folder": ("list what's in {path}", "show me the contents of {path}"),
    "make_folder": ("create a folder {path}", "make a new directory at {path}"),
    "move_path": ("move {source} to {destination}", "relocate {source} into {destination}"),
    "path_info": ("tell me what {path} is and how big it is", "get info about {path}"),
    "read_text_file": ("read the file {path}", "show me what {path} says"),
    "remove_path": ("delete {path}", "remove {path}"),
    "write_text_file": ("write '{content}' to {path}", "save the text '{content}' in {path}"),
    # math and units
    "compound_interest_value": ("work out what {principal} grows to in {years} years at an annual rate of "
                                "{annual_rate}", "compute the future value of {principal} at a yearly rate of "
                                "{annual_rate} over {years} years"),
    "convert_measurement": ("convert {value} {from_unit} to {to_unit}", "express {value} {from_unit} in {to_unit}"),
    "convert_measurements": ("convert these: {conversions}", "do these unit conversions: {conversions}"),
    "describe_numbers": ("compute the {measures} of {values}", "give me the {measures} of the numbers {values}"),
    "memory_recall": ("recall the number stored as '{key}'", "get back the value saved under {key}"),
    "memory_store": ("remember {value} as '{key}'", "store {value} under the key {key}"),
    "percent_of": ("work out what percentage {part} is of {whole}", "calculate {part} as a percent of {whole}"),
    "round_to_places": ("round {value}", "round the number {value}"),
    "solve_linear": ("solve {a}*x + {b} = 0 for x", "find the x where {a}x + {b} equals zero"),
    # shopping
    "cart_add_item": ("add {product_id} to my cart", "put product {product_id} in the cart"),
    "cart_remove_item": ("remove {product_id} from my cart", "take {product_id} out of the cart"),
    "cart_summary": ("show what's in my cart", "give me my cart total"),
    "checkout_cart": ("check out and ship to {shipping_address}, paying by {payment_method}",
                      "place the order to {shipping_address} with {payment_method}"),
    "find_products": ("search the shop for '{query}'", "find products matching {query}"),
    "product_info": ("show the details of product {product_id}", "look up {product_id}"),
    "redeem_coupon": ("apply the coupon {code}", "use discount code {code}"),
    "shop_cancel_order": ("cancel order {order_id}", "call off my order {order_id}"),
    "shop_order_status": ("check the status of order {order_id}", "tell me where order {order_id} stands"),
    "shop_track_package": ("track the package for order {order_id}", "tell me where the shipment of {order_id} is"),
    # travel
    "cancel_reservation": ("cancel booking {booking_id}", "call off reservation {booking_id}"),
    "find_flight_options": ("find flights from {origin} to {destination} on {date}",
                            "search for a flight {origin} to {destination} on {date}"),
    "find_lodging": ("find hotels in {city}", "look for a place to stay in {city}"),
    "list_reservations": ("list my bookings", "show all my reservations"),
    "reservation_details": ("show the details of booking {booking_id}", "look up reservation {booking_id}"),
    "reserve_flight": ("book flight {flight_id} for {travellers}", "reserve seats on {flight_id} for {travellers}"),
    "reserve_lodging": ("book hotel {hotel_id} from {check_in} for {nights} nights",
                        "reserve {hotel_id} for {nights} nights starting {check_in}"),
    "travel_advisory_for": ("get the travel advisory for {country}", "check whether {country} is safe to visit"),
}

OPTIONAL: dict[str, tuple[str, ...]] = {
    "unit": ("in {v}",), "days": ("for {v} days", "over the next {v} days"), "severity": ("of {v} severity",),
    "city": ("for {v}", "in {v}"), "status": ("that are {v}",), "memo": ("with the memo '{v}'", "noting '{v}'"),
    "day_start": ("starting no earlier than {v}",), "day_end": ("ending by {v}",), "attendees": ("with {v}",),
    "location": ("in {v}", "at {v}"), "limit": ("(at most {v} messages)", "limited to {v} messages"),
    "mode": ("in {v} mode",), "max_chars": ("(only the first {v} characters)",), "folder": ("under {v}", "in {v}"),
    "compounds_per_year": ("compounded {v} times a year",), "places": ("to {v} decimal places",),
    "quantity": ("(quantity {v})", "x{v}"), "category": ("in the {v} category",), "max_price": ("under {v}",),
    "reason": ("with the reason '{v}'", "because '{v}'"), "cabin": ("in {v} class",),
    "max_stops": ("with at most {v} stops",), "min_stars": ("with at least {v} stars",),
    "max_nightly": ("at no more than {v} a night",), "kind": ("only {v} bookings",), "guests": ("for {v} guests",),
}
BOOLEAN: dict[str, tuple[str, str]] = {
    "unread_only": ("only unread ones", "including ones I've read"),
    "include_folders": ("including sub-folders", "files only, no sub-folders"),
    "recursive": ("with everything inside it", "only if it is empty"),
}

NAMES = ("Ana Silva", "Li Wei", "Omar Haddad", "Sofia Rossi", "Ken Ito", "Priya Nair", "Jonas Berg", "Mei Chen")
STREETS = ("1 Main St", "22 Harbour Rd", "5 Elm Avenue", "310 King St W", "8 Rua Nova")
TOWNS = (("Porto", "4000", "PT"), ("Bergen", "5003", "NO"), ("Leeds", "LS1 4AP", "GB"), ("Quebec", "G1R 4P5", "CA"))
MEMOS = ("rent", "dinner split", "savings", "gift", "utilities")
REASONS = ("ordered by mistake", "found it cheaper", "no longer needed")
TEXTS = ("on my way", "meeting moved to 3pm", "can you review the draft?", "happy birthday!", "see you tomorrow")


def _hour_pair(rng: random.Random) -> tuple[str, str]:
    start = rng.randint(8, 16)
    minutes = rng.choice(("00", "30"))
    return f"{start:02d}:{minutes}", f"{start + rng.choice((1, 1, 2)):02d}:{minutes}"


def _travellers(rng: random.Random, pool: dict[str, list[Any]]) -> list[dict[str, Any]]:
    people = []
    for name in rng.sample(NAMES, rng.choice((1, 1, 2))):
        person: dict[str, Any] = {"full_name": name, "age": rng.randint(18, 80)}
        if rng.random() < 0.5:
            person["seat_preference"] = rng.choice(("window", "aisle", "any"))
        people.append(person)
    return people


def _order(rng: random.Random, pool: dict[str, list[Any]]) -> dict[str, Any]:
    order: dict[str, Any] = {"ticker": rng.choice(pool.get("ticker") or ["NOVA"]), "side": rng.choice(("buy", "sell")),
                             "quantity": rng.randint(1, 50), "order_type": rng.choice(("market", "limit"))}
    if order["order_type"] == "limit":
        order["limit_price"] = float(rng.randint(10, 400))
    return order


def _meetings(rng: random.Random, pool: dict[str, list[Any]]) -> list[dict[str, Any]]:
    out = []
    for title in rng.sample(pool.get("title") or ["Sync"], rng.randint(1, 2)):
        start, end = _hour_pair(rng)
        meeting: dict[str, Any] = {"title": title, "date": rng.choice(pool.get("date") or ["2026-03-02"]),
                                   "start": start, "end": end}
        if rng.random() < 0.4 and pool.get("attendees"):
            meeting["attendees"] = rng.choice(pool["attendees"])
        out.append(meeting)
    return out


def _changes(rng: random.Random, pool: dict[str, list[Any]]) -> dict[str, Any]:
    start, end = _hour_pair(rng)
    options = [{"start": start, "end": end}, {"title": rng.choice(pool.get("title") or ["Sync"])},
               {"location": rng.choice(("Room 4B", "the big room", "video call"))}]
    return rng.choice(options)


def _conversions(rng: random.Random, pool: dict[str, list[Any]]) -> list[dict[str, Any]]:
    pairs = (("km", "mi"), ("mi", "km"), ("lb", "kg"), ("kg", "lb"), ("C", "F"), ("F", "C"), ("l", "gal"),
             ("ft", "m"), ("h", "min"), ("oz", "g"))
    return [{"value": rng.randint(1, 200), "from_unit": a, "to_unit": b}
            for a, b in rng.sample(pairs, rng.randint(1, 3))]


def _address(rng: random.Random, pool: dict[str, list[Any]]) -> dict[str, Any]:
    town, postal, country = rng.choice(TOWNS)
    return {"street": rng.choice(STREETS), "city": town, "postal_code": postal, "country": country}


def _contact(rng: random.Random, pool: dict[str, list[Any]]) -> dict[str, Any]:
    first = rng.choice(NAMES).split()[0]
    card: dict[str, Any] = {"name": first, "phone": f"+1555{rng.randint(1000000, 9999999)}"}
    if rng.random() < 0.5:
        card["email"] = f"{first.lower()}@example.org"
    return card


def _weather_contact(rng: random.Random, pool: dict[str, list[Any]]) -> dict[str, Any]:
    first = rng.choice(NAMES).split()[0].lower()
    contact: dict[str, Any] = {"email": f"{first}@example.org"}
    if rng.random() < 0.4:
        contact["phone"] = f"+47{rng.randint(10000000, 99999999)}"
    return contact


ValueMaker = Callable[[random.Random, dict[str, list[Any]]], Any]
MAKERS: dict[str, tuple[ValueMaker, ...]] = {
    "travellers": (_travellers,), "order": (_order,), "meetings": (_meetings,), "changes": (_changes,),
    "conversions": (_conversions,), "shipping_address": (_address,), "contact": (_contact, _weather_contact),
    "memo": (lambda rng, _: rng.choice(MEMOS),), "reason": (lambda rng, _: rng.choice(REASONS),),
    "location": (lambda rng, _: rng.choice(("Room 4B", "the big room", "video call")),),
    "text": (lambda rng, _: rng.choice(TEXTS),),
    "values": (lambda rng, _: [rng.randint(1, 60) for _ in range(rng.randint(3, 6))],),
    "measures": (lambda rng, _: rng.sample(["mean", "median", "stdev", "min", "max", "sum"], rng.randint(1, 3)),),
    "amount": (lambda rng, _: float(rng.choice((10, 20, 25, 40, 50, 75, 100, 120, 250))),),
    "days": (lambda rng, _: rng.randint(1, 7),), "limit": (lambda rng, _: rng.randint(2, 8),),
    "duration_minutes": (lambda rng, _: rng.choice((30, 45, 60, 90)),),
    "principal": (lambda rng, _: float(rng.choice((500, 1000, 2500, 10000))),),
    "annual_rate": (lambda rng, _: rng.choice((0.02, 0.03, 0.045, 0.05, 0.07)),),
    "years": (lambda rng, _: rng.randint(1, 30),), "places": (lambda rng, _: rng.randint(0, 3),),
    "value": (lambda rng, _: round(rng.uniform(-50, 500), rng.choice((0, 1, 2))),),
    "part": (lambda rng, _: rng.randint(1, 90),), "whole": (lambda rng, _: rng.randint(100, 400),),
    "a": (lambda rng, _: rng.choice((2, 3, 4, 5, -2)),), "b": (lambda rng, _: rng.randint(-20, 20),),
    "key": (lambda rng, _: rng.choice(("total", "subtotal", "x", "budget", "avg")),),
    "nights": (lambda rng, _: rng.randint(1, 10),), "guests": (lambda rng, _: rng.randint(1, 4),),
    "quantity": (lambda rng, _: rng.randint(1, 3),), "max_price": (lambda rng, _: float(rng.randint(20, 300)),),
}


def made_values(name: str, rng: random.Random, pool: dict[str, list[Any]]) -> list[Any]:
    """Candidate values of parameter `name` from the makers (the caller keeps those that fit the schema)."""
    return [maker(rng, pool) for maker in MAKERS.get(name, ())]


# ---------------------------------------------------------------- saying values


def say(value: Any) -> str:
    """A value as a user would write it; strings verbatim, lists joined, objects as `main (key value, ...)`."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        items = [say(v) for v in value]
        separator = "; " if any(isinstance(v, dict) for v in value) else ", "
        return items[0] if len(items) == 1 else separator.join(items[:-1]) + " and " + items[-1]
    if isinstance(value, dict):
        return _say_object(value)
    return str(value)


def _say_object(value: dict[str, Any]) -> str:
    if {"ticker", "side", "quantity", "order_type"} <= set(value):
        text = f"a {value['order_type']} order to {value['side']} {value['quantity']} {value['ticker']}"
        return text + (f" at a limit of {say(value['limit_price'])}" if "limit_price" in value else "")
    if {"value", "from_unit", "to_unit"} <= set(value):
        return f"{say(value['value'])} {value['from_unit']} to {value['to_unit']}"
    if {"street", "city", "postal_code", "country"} <= set(value):
        return f"{value['street']}, {value['city']} {value['postal_code']}, {value['country']}"
    if {"title", "date", "start", "end"} <= set(value):
        text = f"'{value['title']}' on {value['date']} from {value['start']} to {value['end']}"
        return text + (f" with {say(value['attendees'])}" if value.get("attendees") else "")
    head_key = next((k for k in ("full_name", "name", "email") if k in value), None)
    rest = [f"{k.replace('_', ' ')} {say(v)}" for k, v in value.items() if k != head_key]
    if head_key is None:
        return " and ".join(f"the {part}" for part in rest)
    return f"{value[head_key]} ({', '.join(rest)})" if rest else str(value[head_key])


def optional_clause(name: str, value: Any, rng: random.Random) -> str:
    if isinstance(value, bool) and name in BOOLEAN:
        return BOOLEAN[name][0 if value else 1]
    template = rng.choice(OPTIONAL.get(name, ("with " + name.replace("_", " ") + " {v}",)))
    return template.format(v=say(value))


# ---------------------------------------------------------------- saying results


def summarise(value: Any, limit: int = 3) -> str:
    """A short, faithful summary of a tool result for a final answer."""
    if isinstance(value, dict):
        flat = [(k, v) for k, v in value.items() if not isinstance(v, dict)
                and not (isinstance(v, list) and any(isinstance(item, (dict, list)) for item in v))]
        items = (flat or list(value.items()))[:limit]
        return ", ".join(f"{k.replace('_', ' ')} {summarise(v, 2)}" for k, v in items) or "nothing yet"
    if isinstance(value, list):
        if not value:
            return "no results"
        shown = "; ".join(summarise(v, 2) for v in value[:limit])
        return shown + (f" (and {len(value) - limit} more)" if len(value) > limit else "")
    if isinstance(value, float):
        return say(round(value, 2) if abs(value) >= 1 else float(f"{value:.3g}"))
    return say(value)


def answer_for(results: list[Any], rng: random.Random) -> str:
    """A final answer that reports the real results of the last calls."""
    parts = []
    for result in results:
        if isinstance(result, list) and not result:
            parts.append(rng.choice(("There are no matching results.", "Nothing matched that request.")))
        elif isinstance(result, list):
            parts.append(f"I found {len(result)} result{'s' * (len(result) != 1)}: {summarise(result)}.")
        else:
            parts.append(rng.choice(("Done: {s}.", "Here is the result: {s}.", "All set: {s}.")).format(
                s=summarise(result)))
    return " ".join(parts)


__all__ = ["BOOLEAN", "MAKERS", "OPTIONAL", "TASKS", "answer_for", "made_values", "optional_clause", "say",
           "summarise"]
