"""Messaging: chats with contacts and groups, search, read receipts (stateful)."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from qwen_tool.env.suite import Suite, tool_method
from qwen_tool.env.suites._common import call, make_task, next_id
from qwen_tool.env.task import Task

NAMES = ["Ana", "Li", "Omar", "Sofia", "Ken", "Priya"]
LINES = ["see you at 6", "running late", "the report is ready", "lunch tomorrow?", "call me when free", "thanks!"]


class ContactCard(TypedDict):
    name: str
    phone: str
    email: NotRequired[str]


class MessagingSuite(Suite):
    name = "messaging"
    domain = "messaging"
    description = "Simulated chat app: contacts, messages, groups."

    def setup(self) -> None:
        self.data["contacts"] = {n: {"phone": f"+1555{self.rng.randint(1000000, 9999999)}"} for n in NAMES[:5]}
        self.data["groups"] = {}
        self.data["messages"] = {}
        for _ in range(6):
            self._store(self.rng.choice(NAMES[:5]), "me", self.rng.choice(LINES))

    def _store(self, sender: str, recipient: str, text: str) -> str:
        message_id = next_id(self.data, "MSG")
        self.data["messages"][message_id] = {"from": sender, "to": recipient, "text": text, "read": False}
        return message_id

    def _known(self, name: str) -> None:
        if name not in self.data["contacts"] and name not in self.data["groups"]:
            raise ValueError(f"'{name}' is neither a contact nor a group; add the contact first")

    @tool_method
    def send_chat_message(self, recipient: str, text: str) -> dict[str, Any]:
        """Send a message to one contact or group.

        Args:
            recipient: Contact or group name.
            text: Message text.
        """
        self._known(recipient)
        return {"message_id": self._store("me", recipient, text), "status": "sent"}

    @tool_method
    def send_chat_messages(self, recipients: list[str], text: str) -> dict[str, Any]:
        """Send the same message to several contacts, one message each.

        Args:
            recipients: Contact names.
            text: Message text.
        """
        for name in recipients:
            self._known(name)
        return {"message_ids": [self._store("me", name, text) for name in recipients], "status": "sent"}

    @tool_method
    def list_address_book(self) -> dict[str, Any]:
        """All contacts with their details."""
        return self.data["contacts"]

    @tool_method
    def save_new_contact(self, contact: ContactCard) -> dict[str, Any]:
        """Add a contact to the address book.

        Args:
            contact: Name, phone and optional email.
        """
        if contact["name"] in self.data["contacts"]:
            raise ValueError(f"contact '{contact['name']}' already exists")
        self.data["contacts"][contact["name"]] = {k: v for k, v in contact.items() if k != "name"}
        return {"name": contact["name"], "saved": True}

    @tool_method
    def fetch_conversation(self, contact: str, limit: int = 10) -> list[dict[str, Any]]:
        """Latest messages exchanged with a contact, oldest first.

        Args:
            contact: Contact name.
            limit: Maximum number of messages.
        """
        self._known(contact)
        found = [{"message_id": k, **v} for k, v in self.data["messages"].items() if contact in (v["from"], v["to"])]
        return found[-limit:]

    @tool_method
    def erase_chat_message(self, message_id: str) -> dict[str, Any]:
        """Delete a message.

        Args:
            message_id: Message id, e.g. "MSG-1001".
        """
        if self.data["messages"].pop(message_id, None) is None:
            raise KeyError(f"no message '{message_id}'")
        return {"message_id": message_id, "deleted": True}

    @tool_method
    def find_chat_messages(self, query: str, unread_only: bool = False) -> list[dict[str, Any]]:
        """Messages whose text contains the query (case-insensitive).

        Args:
            query: Text to look for.
            unread_only: Only unread messages.
        """
        return [{"message_id": k, **v} for k, v in self.data["messages"].items()
                if query.lower() in v["text"].lower() and (not unread_only or not v["read"])]

    @tool_method
    def create_chat_group(self, group_name: str, members: list[str]) -> dict[str, Any]:
        """Create a group chat of existing contacts.

        Args:
            group_name: Name of the group.
            members: Contact names (at least two).
        """
        if len(members) < 2:
            raise ValueError("a group needs at least two members")
        for name in members:
            if name not in self.data["contacts"]:
                raise ValueError(f"'{name}' is not a contact")
        self.data["groups"][group_name] = sorted(members)
        return {"group_name": group_name, "members": sorted(members)}

    @tool_method
    def mark_messages_read(self, message_ids: list[str]) -> dict[str, Any]:
        """Mark messages as read.

        Args:
            message_ids: Message ids.
        """
        for message_id in message_ids:
            if message_id not in self.data["messages"]:
                raise KeyError(f"no message '{message_id}'")
            self.data["messages"][message_id]["read"] = True
        return {"marked": len(message_ids)}

    def argument_pool(self) -> dict[str, list[Any]]:
        contacts = list(self.data["contacts"])
        return {"recipient": contacts, "recipients": [contacts[:2], contacts[2:4]], "text": LINES,
                "contact": contacts, "message_id": list(self.data["messages"]),
                "message_ids": [list(self.data["messages"])[:2]], "query": ["report", "lunch"],
                "members": [contacts[:3]], "group_name": ["team", "family"]}

    @classmethod
    def tasks(cls) -> list[Task]:
        return [
            make_task("messaging", 0, "Tell Ana and Li that the report is ready.",
                      [[call("send_chat_messages", recipients=["Ana", "Li"], text="The report is ready.")]],
                      "Both got the message."),
            make_task("messaging", 1, "Save Priya (+15550001111) as a contact and text her 'welcome!'.",
                      [[call("save_new_contact", contact={"name": "Priya", "phone": "+15550001111"})],
                       [call("send_chat_message", recipient="Priya", text="welcome!")]], "Saved and sent."),
            make_task("messaging", 2, "Find unread messages about lunch.",
                      [[call("find_chat_messages", query="lunch", unread_only=True)]], "Here they are."),
        ]
