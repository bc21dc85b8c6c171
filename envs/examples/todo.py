"""A small to-do list, the example of a user tool class for ``PythonToolsEnv``."""

from typing import Literal


class TodoList:
    """A personal to-do list: items have an id, a title, a priority (1 urgent, 2 normal,
    3 someday), tags and a done flag."""

    def __init__(self) -> None:
        self.items: list[dict] = []
        self.next_id: int = 1

    def add_item(self, title: str, priority: Literal[1, 2, 3] = 2, tags: list[str] | None = None) -> dict:
        """Add an item to the list.

        Args:
            title: What to do.
            priority: 1 (urgent), 2 (normal) or 3 (someday).
            tags: Labels for grouping, such as "home" or "work".
        """
        item = {"id": self.next_id, "title": title, "priority": priority, "tags": list(tags or []), "done": False}
        self.items.append(item)
        self.next_id += 1
        return {"id": item["id"]}

    def list_items(self, include_done: bool = False, tag: str | None = None) -> dict:
        """List the items, most urgent first.

        Args:
            include_done: Also list items already done.
            tag: Only list items with this tag.
        """
        items = [
            item for item in self.items if (include_done or not item["done"]) and (tag is None or tag in item["tags"])
        ]
        return {"items": sorted(items, key=lambda item: (item["priority"], item["id"]))}

    def find_items(self, query: str) -> dict:
        """Find items whose title contains the query (case-insensitive).

        Args:
            query: Text to look for in the titles.
        """
        return {"items": [item for item in self.items if query.lower() in item["title"].lower()]}

    def complete_item(self, item_id: int) -> dict:
        """Mark an item as done.

        Args:
            item_id: The id of the item.
        """
        self._get(item_id)["done"] = True
        return {"id": item_id, "done": True}

    def set_priority(self, item_id: int, priority: Literal[1, 2, 3]) -> dict:
        """Change the priority of an item.

        Args:
            item_id: The id of the item.
            priority: 1 (urgent), 2 (normal) or 3 (someday).
        """
        self._get(item_id)["priority"] = priority
        return {"id": item_id, "priority": priority}

    def remove_item(self, item_id: int) -> dict:
        """Delete an item from the list.

        Args:
            item_id: The id of the item.
        """
        self.items.remove(self._get(item_id))
        return {"removed": item_id}

    def _get(self, item_id: int) -> dict:
        for item in self.items:
            if item["id"] == item_id:
                return item
        raise KeyError(f"no item with id {item_id}")
