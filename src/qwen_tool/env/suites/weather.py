"""Weather: current conditions, forecasts, air quality, alerts and alert subscriptions (stateful)."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from qwen_tool.env.suite import Suite, tool_method
from qwen_tool.env.suites._common import call, make_task, next_id
from qwen_tool.env.task import Task

CITIES = ["Lisbon", "Oslo", "Nairobi", "Osaka", "Lima", "Toronto", "Cairo", "Perth", "Vienna", "Hanoi"]
CONDITIONS = ["sunny", "cloudy", "rain", "snow", "windy", "fog"]
AlertType = Literal["storm", "heat", "flood", "frost", "wind"]
Unit = Literal["celsius", "fahrenheit"]


class Contact(TypedDict):
    email: str
    phone: NotRequired[str]


def _to_unit(celsius: float, unit: str) -> float:
    return round(celsius if unit == "celsius" else celsius * 9 / 5 + 32, 1)


class WeatherSuite(Suite):
    name = "weather"
    domain = "weather"
    description = "Simulated weather service: conditions, forecasts, air quality, alerts."

    def setup(self) -> None:
        self.data["cities"] = {
            city: {"temp_c": round(self.rng.uniform(-10, 35), 1), "condition": self.rng.choice(CONDITIONS),
                   "humidity": self.rng.randint(10, 95), "aqi": self.rng.randint(5, 180), "uv": self.rng.randint(0, 11),
                   "trend": [round(self.rng.uniform(-4, 4), 1) for _ in range(7)]}
            for city in CITIES
        }
        self.data["alerts"] = [{"city": c, "type": self.rng.choice(["storm", "heat", "flood", "frost", "wind"]),
                                "severity": self.rng.choice(["minor", "moderate", "severe"])}
                               for c in self.rng.sample(CITIES, 3)]
        self.data["subscriptions"] = {}

    def _city(self, city: str) -> dict[str, Any]:
        if city not in self.data["cities"]:
            raise ValueError(f"unknown city '{city}'; known cities: {', '.join(CITIES)}")
        return self.data["cities"][city]

    @tool_method
    def fetch_current_conditions(self, city: str, unit: Unit = "celsius") -> dict[str, Any]:
        """Current weather of one city.

        Args:
            city: City name, e.g. "Oslo".
            unit: Temperature unit.
        """
        c = self._city(city)
        return {"city": city, "temperature": _to_unit(c["temp_c"], unit), "unit": unit,
                "condition": c["condition"], "humidity": c["humidity"]}

    @tool_method
    def fetch_forecast(self, city: str, days: int = 3, unit: Unit = "celsius") -> dict[str, Any]:
        """Daily temperature forecast for one city (1 to 7 days).

        Args:
            city: City name.
            days: Number of days, 1-7.
            unit: Temperature unit.
        """
        if not 1 <= days <= 7:
            raise ValueError(f"days must be between 1 and 7, got {days}")
        c = self._city(city)
        temps, t = [], c["temp_c"]
        for delta in c["trend"][:days]:
            t += delta
            temps.append(_to_unit(t, unit))
        return {"city": city, "unit": unit, "daily": temps}

    @tool_method
    def fetch_forecasts(self, cities: list[str], days: int = 3) -> list[dict[str, Any]]:
        """Daily forecasts (celsius) for several cities at once.

        Args:
            cities: City names.
            days: Number of days, 1-7.
        """
        return [self.fetch_forecast(city, days) for city in cities]

    @tool_method
    def lookup_air_quality(self, city: str) -> dict[str, Any]:
        """Air quality index (AQI) of a city and its band.

        Args:
            city: City name.
        """
        aqi = self._city(city)["aqi"]
        band = "good" if aqi <= 50 else "moderate" if aqi <= 100 else "unhealthy"
        return {"city": city, "aqi": aqi, "band": band}

    @tool_method
    def lookup_uv_index(self, city: str) -> dict[str, Any]:
        """UV index of a city (0-11+).

        Args:
            city: City name.
        """
        return {"city": city, "uv_index": self._city(city)["uv"]}

    @tool_method
    def list_active_alerts(self, city: str | None = None,
                           severity: Literal["minor", "moderate", "severe"] | None = None) -> list[dict[str, Any]]:
        """Active weather alerts, optionally for one city and/or severity.

        Args:
            city: Only alerts for this city.
            severity: Only alerts of this severity.
        """
        return [a for a in self.data["alerts"]
                if (city is None or a["city"] == city) and (severity is None or a["severity"] == severity)]

    @tool_method
    def subscribe_alerts(self, city: str, alert_types: list[AlertType], contact: Contact) -> dict[str, Any]:
        """Subscribe a contact to alerts of the given types for a city.

        Args:
            city: City name.
            alert_types: Which alerts to send.
            contact: Where to send them (email, optional phone).
        """
        self._city(city)
        sub_id = next_id(self.data, "SUB")
        self.data["subscriptions"][sub_id] = {"city": city, "alert_types": sorted(set(alert_types)),
                                              "contact": dict(contact)}
        return {"subscription_id": sub_id, "status": "active"}

    @tool_method
    def unsubscribe_alerts(self, subscription_id: str) -> dict[str, Any]:
        """Cancel an alert subscription.

        Args:
            subscription_id: Id returned by subscribe_alerts.
        """
        if self.data["subscriptions"].pop(subscription_id, None) is None:
            raise KeyError(f"no subscription '{subscription_id}'")
        return {"subscription_id": subscription_id, "status": "cancelled"}

    @tool_method
    def list_alert_subscriptions(self) -> dict[str, Any]:
        """All alert subscriptions by id."""
        return self.data["subscriptions"]

    def argument_pool(self) -> dict[str, list[Any]]:
        return {"city": CITIES, "cities": [self.rng.sample(CITIES, 2)], "subscription_id": list(self.data[
            "subscriptions"]) or ["SUB-1001"], "alert_types": [["storm"], ["heat", "flood"]],
            "contact": [{"email": "ana@example.org"}, {"email": "li@example.org", "phone": "+4712345678"}]}

    @classmethod
    def tasks(cls) -> list[Task]:
        return [
            make_task("weather", 0, "Is it warmer in Lisbon or Oslo right now? Use fahrenheit.",
                      [[call("fetch_current_conditions", city="Lisbon", unit="fahrenheit"),
                        call("fetch_current_conditions", city="Oslo", unit="fahrenheit")]],
                      "I compared both cities."),
            make_task("weather", 1, "Give me 5-day forecasts for Osaka and Hanoi, then subscribe ana@example.org "
                      "to storm and flood alerts for Hanoi.",
                      [[call("fetch_forecasts", cities=["Osaka", "Hanoi"], days=5)],
                       [call("subscribe_alerts", city="Hanoi", alert_types=["storm", "flood"],
                             contact={"email": "ana@example.org"})]],
                      "Forecasts are in and ana@example.org is subscribed."),
            make_task("weather", 2, "How is the air in Cairo, and what is the UV index there?",
                      [[call("lookup_air_quality", city="Cairo"), call("lookup_uv_index", city="Cairo")]],
                      "Here are the air quality and UV index for Cairo."),
        ]
