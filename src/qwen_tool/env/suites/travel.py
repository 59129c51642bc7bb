"""Travel: flight and lodging search and reservations, advisories (stateful)."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from qwen_tool.env.suite import Suite, tool_method
from qwen_tool.env.suites._common import call, make_task, next_id
from qwen_tool.env.task import Task

AIRPORTS = ["LIS", "OSL", "NBO", "KIX", "LIM", "YYZ"]
CITIES = {"LIS": "Lisbon", "OSL": "Oslo", "NBO": "Nairobi", "KIX": "Osaka", "LIM": "Lima", "YYZ": "Toronto"}
COUNTRIES = ["Portugal", "Norway", "Kenya", "Japan", "Peru", "Canada"]
Cabin = Literal["economy", "premium", "business"]


class Traveller(TypedDict):
    full_name: str
    age: int
    seat_preference: NotRequired[Literal["window", "aisle", "any"]]


class TravelSuite(Suite):
    name = "travel"
    domain = "travel"
    description = "Simulated travel agency: flights, lodging, reservations."

    def setup(self) -> None:
        self.data["flights"] = {}
        for number in range(12):
            origin, destination = self.rng.sample(AIRPORTS, 2)
            self.data["flights"][f"FL{300 + number}"] = {
                "origin": origin, "destination": destination, "date": f"2026-04-0{self.rng.randint(1, 3)}",
                "stops": self.rng.randint(0, 2), "fares": {"economy": self.rng.randint(90, 600),
                                                           "premium": self.rng.randint(600, 900),
                                                           "business": self.rng.randint(900, 3000)}}
        self.data["lodgings"] = {f"H{20 + i}": {"city": CITIES[AIRPORTS[i % 6]], "stars": self.rng.randint(2, 5),
                                                "nightly": self.rng.randint(40, 400)} for i in range(12)}
        self.data["reservations"] = {}
        self.data["advisories"] = {c: self.rng.choice(["normal", "caution", "avoid non-essential travel"])
                                   for c in COUNTRIES}

    @tool_method
    def find_flight_options(self, origin: str, destination: str, date: str, cabin: Cabin = "economy",
                            max_stops: int | None = None) -> list[dict[str, Any]]:
        """Flights on a day between two airports, cheapest first.

        Args:
            origin: IATA code, e.g. "LIS".
            destination: IATA code.
            date: Day, YYYY-MM-DD.
            cabin: Cabin class for the fare.
            max_stops: Only flights with at most this many stops.
        """
        found = [{"flight_id": fid, "stops": f["stops"], "fare": f["fares"][cabin], "cabin": cabin}
                 for fid, f in self.data["flights"].items()
                 if (f["origin"], f["destination"], f["date"]) == (origin, destination, date)
                 and (max_stops is None or f["stops"] <= max_stops)]
        return sorted(found, key=lambda f: f["fare"])

    @tool_method
    def reserve_flight(self, flight_id: str, travellers: list[Traveller], cabin: Cabin = "economy") -> dict[str, Any]:
        """Book seats on a flight.

        Args:
            flight_id: Flight id from find_flight_options.
            travellers: One entry per person.
            cabin: Cabin class.
        """
        if flight_id not in self.data["flights"]:
            raise KeyError(f"no flight '{flight_id}'")
        if not travellers:
            raise ValueError("at least one traveller is needed")
        fare = self.data["flights"][flight_id]["fares"][cabin] * len(travellers)
        booking_id = next_id(self.data, "BK")
        self.data["reservations"][booking_id] = {"kind": "flight", "flight_id": flight_id, "cabin": cabin,
                                                 "travellers": [dict(t) for t in travellers], "total": fare,
                                                 "status": "confirmed"}
        return {"booking_id": booking_id, "total": fare}

    @tool_method
    def find_lodging(self, city: str, min_stars: int | None = None,
                     max_nightly: float | None = None) -> list[dict[str, Any]]:
        """Hotels in a city.

        Args:
            city: City name, e.g. "Lisbon".
            min_stars: At least this many stars (1-5).
            max_nightly: At most this nightly price.
        """
        return [{"hotel_id": hid, **h} for hid, h in self.data["lodgings"].items()
                if h["city"] == city and (min_stars is None or h["stars"] >= min_stars)
                and (max_nightly is None or h["nightly"] <= max_nightly)]

    @tool_method
    def reserve_lodging(self, hotel_id: str, check_in: str, nights: int, guests: int = 1) -> dict[str, Any]:
        """Book a hotel.

        Args:
            hotel_id: Hotel id from find_lodging.
            check_in: Day of arrival, YYYY-MM-DD.
            nights: Number of nights (1-30).
            guests: Number of guests.
        """
        if hotel_id not in self.data["lodgings"]:
            raise KeyError(f"no hotel '{hotel_id}'")
        if not 1 <= nights <= 30:
            raise ValueError("nights must be 1..30")
        total = self.data["lodgings"][hotel_id]["nightly"] * nights
        booking_id = next_id(self.data, "BK")
        self.data["reservations"][booking_id] = {"kind": "hotel", "hotel_id": hotel_id, "check_in": check_in,
                                                 "nights": nights, "guests": guests, "total": total,
                                                 "status": "confirmed"}
        return {"booking_id": booking_id, "total": total}

    @tool_method
    def cancel_reservation(self, booking_id: str) -> dict[str, Any]:
        """Cancel a flight or hotel booking.

        Args:
            booking_id: Booking id, e.g. "BK-1001".
        """
        booking = self.data["reservations"].get(booking_id)
        if booking is None or booking["status"] != "confirmed":
            raise ValueError(f"no confirmed booking '{booking_id}'")
        booking["status"] = "cancelled"
        return {"booking_id": booking_id, "status": "cancelled"}

    @tool_method
    def reservation_details(self, booking_id: str) -> dict[str, Any]:
        """Details of a booking.

        Args:
            booking_id: Booking id.
        """
        if booking_id not in self.data["reservations"]:
            raise KeyError(f"no booking '{booking_id}'")
        return {"booking_id": booking_id, **self.data["reservations"][booking_id]}

    @tool_method
    def list_reservations(self, kind: Literal["flight", "hotel"] | None = None) -> list[str]:
        """Ids of all bookings, optionally of one kind.

        Args:
            kind: Only flights or only hotels.
        """
        return [k for k, v in self.data["reservations"].items() if kind is None or v["kind"] == kind]

    @tool_method
    def travel_advisory_for(self, country: str) -> dict[str, Any]:
        """Official travel advice level for a country.

        Args:
            country: Country name, e.g. "Japan".
        """
        if country not in self.data["advisories"]:
            raise ValueError(f"no advisory for '{country}'; known: {', '.join(COUNTRIES)}")
        return {"country": country, "level": self.data["advisories"][country]}

    def argument_pool(self) -> dict[str, list[Any]]:
        flights = self.data["flights"]
        return {"origin": AIRPORTS, "destination": AIRPORTS, "date": ["2026-04-01", "2026-04-02"],
                "flight_id": list(flights), "hotel_id": list(self.data["lodgings"]), "city": list(CITIES.values()),
                "country": COUNTRIES, "check_in": ["2026-04-01"], "nights": [2, 3],
                "booking_id": list(self.data["reservations"]) or ["BK-1001"],
                "travellers": [[{"full_name": "Ana Silva", "age": 34, "seat_preference": "window"}]]}

    @classmethod
    def tasks(cls) -> list[Task]:
        return [
            make_task("travel", 0, "Book FL300 in business for Ana Silva (34, window seat), then show the booking.",
                      [[call("reserve_flight", flight_id="FL300", cabin="business",
                             travellers=[{"full_name": "Ana Silva", "age": 34, "seat_preference": "window"}])],
                       [call("reservation_details", booking_id="BK-1001")]], "Booked."),
            make_task("travel", 1, "Is Japan safe to visit, and which 4-star-or-better hotels are in Osaka?",
                      [[call("travel_advisory_for", country="Japan"), call("find_lodging", city="Osaka", min_stars=4)]],
                      "Here is the advice and the hotels."),
            make_task("travel", 2, "Reserve hotel H20 from 2026-04-01 for 3 nights for 2 guests, then cancel it.",
                      [[call("reserve_lodging", hotel_id="H20", check_in="2026-04-01", nights=3, guests=2)],
                       [call("cancel_reservation", booking_id="BK-1001")]], "Reserved and cancelled."),
        ]
