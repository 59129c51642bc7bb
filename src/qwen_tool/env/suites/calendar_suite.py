"""Calendar: meetings with attendees, rescheduling, free slots (stateful)."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from qwen_tool.env.suite import Suite, tool_method
from qwen_tool.env.suites._common import call, make_task, next_id
from qwen_tool.env.task import Task

PEOPLE = ["ana@example.org", "li@example.org", "omar@example.org", "sofia@example.org", "ken@example.org"]
TITLES = ["Standup", "Design review", "1:1", "Budget sync", "Retro", "Hiring panel"]
DATES = ["2026-03-02", "2026-03-03", "2026-03-04"]


class MeetingSpec(TypedDict):
    title: str
    date: str
    start: str
    end: str
    attendees: NotRequired[list[str]]


class MeetingChanges(TypedDict, total=False):
    title: str
    date: str
    start: str
    end: str
    location: str


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    if not (0 <= int(hours) < 24 and 0 <= int(minutes) < 60):
        raise ValueError(f"time '{hhmm}' must be HH:MM")
    return int(hours) * 60 + int(minutes)


class CalendarSuite(Suite):
    name = "calendar"
    domain = "calendar"
    description = "Simulated calendar: meetings, attendees, free slots."

    def setup(self) -> None:
        self.data["meetings"] = {}
        for _ in range(4):
            start = self.rng.randint(9, 16)
            self._add(self.rng.choice(TITLES), self.rng.choice(DATES), f"{start:02d}:00", f"{start + 1:02d}:00",
                      self.rng.sample(PEOPLE, 2), None)

    def _add(self, title: str, date: str, start: str, end: str, attendees: list[str] | None,
             location: str | None) -> str:
        if _minutes(end) <= _minutes(start):
            raise ValueError(f"end {end} must be after start {start}")
        meeting_id = next_id(self.data, "MTG")
        self.data["meetings"][meeting_id] = {"title": title, "date": date, "start": start, "end": end,
                                             "attendees": list(attendees or []), "location": location}
        return meeting_id

    def _get(self, meeting_id: str) -> dict[str, Any]:
        if meeting_id not in self.data["meetings"]:
            raise KeyError(f"no meeting '{meeting_id}'")
        return self.data["meetings"][meeting_id]

    @tool_method
    def schedule_meeting(self, title: str, date: str, start: str, end: str, attendees: list[str] | None = None,
                         location: str | None = None) -> dict[str, Any]:
        """Create one meeting.

        Args:
            title: Meeting title.
            date: Day, YYYY-MM-DD.
            start: Start time, HH:MM (24 h).
            end: End time, HH:MM (24 h).
            attendees: Email addresses to invite.
            location: Room or link.
        """
        return {"meeting_id": self._add(title, date, start, end, attendees, location)}

    @tool_method
    def schedule_meetings(self, meetings: list[MeetingSpec]) -> dict[str, Any]:
        """Create several meetings in one request.

        Args:
            meetings: One entry per meeting.
        """
        ids = [self._add(m["title"], m["date"], m["start"], m["end"], m.get("attendees"), None) for m in meetings]
        return {"meeting_ids": ids}

    @tool_method
    def fetch_meeting(self, meeting_id: str) -> dict[str, Any]:
        """Details of one meeting.

        Args:
            meeting_id: Meeting id, e.g. "MTG-1001".
        """
        return {"meeting_id": meeting_id, **self._get(meeting_id)}

    @tool_method
    def list_meetings_on(self, date: str) -> list[dict[str, Any]]:
        """Meetings on a day, sorted by start time.

        Args:
            date: Day, YYYY-MM-DD.
        """
        found = [{"meeting_id": k, **v} for k, v in self.data["meetings"].items() if v["date"] == date]
        return sorted(found, key=lambda m: m["start"])

    @tool_method
    def reschedule_meeting(self, meeting_id: str, changes: MeetingChanges) -> dict[str, Any]:
        """Change fields of a meeting (title, date, start, end, location).

        Args:
            meeting_id: Meeting id.
            changes: Only the fields to change.
        """
        meeting = self._get(meeting_id)
        updated = {**meeting, **changes}
        if _minutes(updated["end"]) <= _minutes(updated["start"]):
            raise ValueError("end must be after start")
        meeting.update(changes)
        return {"meeting_id": meeting_id, **meeting}

    @tool_method
    def remove_meeting(self, meeting_id: str) -> dict[str, Any]:
        """Delete a meeting.

        Args:
            meeting_id: Meeting id.
        """
        self._get(meeting_id)
        del self.data["meetings"][meeting_id]
        return {"meeting_id": meeting_id, "deleted": True}

    @tool_method
    def find_open_slots(self, date: str, duration_minutes: int, day_start: str = "09:00",
                        day_end: str = "18:00") -> list[str]:
        """Start times (every 30 min) of free slots of the given length on a day.

        Args:
            date: Day, YYYY-MM-DD.
            duration_minutes: Length of the slot.
            day_start: Earliest start, HH:MM.
            day_end: Latest end, HH:MM.
        """
        busy = [(_minutes(m["start"]), _minutes(m["end"])) for m in self.data["meetings"].values() if m["date"] == date]
        slots = []
        for begin in range(_minutes(day_start), _minutes(day_end) - duration_minutes + 1, 30):
            if all(begin + duration_minutes <= s or begin >= e for s, e in busy):
                slots.append(f"{begin // 60:02d}:{begin % 60:02d}")
        return slots

    @tool_method
    def add_meeting_attendees(self, meeting_id: str, attendees: list[str]) -> dict[str, Any]:
        """Invite more people to a meeting.

        Args:
            meeting_id: Meeting id.
            attendees: Email addresses.
        """
        meeting = self._get(meeting_id)
        meeting["attendees"] = sorted(set(meeting["attendees"]) | set(attendees))
        return {"meeting_id": meeting_id, "attendees": meeting["attendees"]}

    def argument_pool(self) -> dict[str, list[Any]]:
        return {"title": TITLES, "date": DATES, "start": ["09:30", "13:00"], "end": ["10:30", "14:00"],
                "attendees": [PEOPLE[:2], PEOPLE[2:3]], "meeting_id": list(self.data["meetings"]),
                "duration_minutes": [30, 60], "changes": [{"start": "15:00", "end": "16:00"}, {"title": "Sync"}]}

    @classmethod
    def tasks(cls) -> list[Task]:
        return [
            make_task("calendar", 0, "Book a 'Roadmap' meeting on 2026-03-05 from 10:00 to 11:00 with ana@example.org.",
                      [[call("schedule_meeting", title="Roadmap", date="2026-03-05", start="10:00", end="11:00",
                             attendees=["ana@example.org"])]], "The meeting is booked."),
            make_task("calendar", 1, "What's on 2026-03-02? Then move MTG-1001 to 17:00-17:30.",
                      [[call("list_meetings_on", date="2026-03-02")],
                       [call("reschedule_meeting", meeting_id="MTG-1001", changes={"start": "17:00", "end": "17:30"})]],
                      "Listed and moved."),
            make_task("calendar", 2, "Find a free hour on 2026-03-03.",
                      [[call("find_open_slots", date="2026-03-03", duration_minutes=60)]], "Here are free slots."),
        ]
