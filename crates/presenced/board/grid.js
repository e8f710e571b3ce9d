// The cards, virtualized: with ten thousand users only the rows on screen
// (and a few beyond) exist in the document. Cells are kept by user id, so
// that a card keeps its element (and its focus) while others move, and
// elements that scroll out are reused for the ones that scroll in.
//
// Keyboard: the list holds one tab stop, the active card (a roving
// tabindex). Arrow keys, Home, End, Page Up and Page Down move it, scrolling
// as needed; Enter or Space opens the card.
//
// Focus: the card that has the focus is never reused for another user.
// Scrolled away (by wheel or scroll bar), it stays in the document at its
// place, so the focus stays on it; when its user leaves the list (a search,
// a filter, or a change that no longer matches), the focus moves to the
// active card, or to the list itself when it is empty, rather than to
// nowhere.

const GAP = 8;
const CARD_MIN_WIDTH = 240;
const CARD_HEIGHT = 118;
/** Rows drawn beyond the visible ones on each side, so that a quick scroll
 * does not show empty space before the next frame. */
const BUFFER_ROWS = 2;

export class VirtualGrid {
  /**
   * `container` scrolls; `presenceOf(id)` gives what a card shows, and
   * `renderCard(button, id, presence)` draws it; `onOpen(id)` opens one.
   */
  constructor(container, { presenceOf, renderCard, onOpen }) {
    this.container = container;
    this.presenceOf = presenceOf;
    this.renderCard = renderCard;
    this.onOpen = onOpen;
    this.ids = [];
    this.cells = new Map();
    this.pool = [];
    this.active = 0;
    this.columns = 1;
    this.space = document.createElement("div");
    this.space.className = "grid-space";
    container.append(this.space);
    this.scheduled = false;
    container.addEventListener("scroll", () => this.schedule(), { passive: true });
    new ResizeObserver(() => this.schedule()).observe(container);
    container.addEventListener("keydown", (event) => this.key(event));
    container.addEventListener("click", (event) => {
      const button = event.target.closest("button.card");
      if (button) {
        this.active = this.ids.indexOf(button.dataset.user);
        this.onOpen(button.dataset.user);
      }
    });
  }

  /** Shows `ids`, in this order. */
  setItems(ids) {
    const activeId = this.ids[this.active];
    this.ids = ids;
    const kept = activeId === undefined ? -1 : ids.indexOf(activeId);
    this.active = kept >= 0 ? kept : Math.min(this.active, Math.max(0, ids.length - 1));
    this.render();
  }

  /** Draws again at the next frame (after a scroll or a resize). */
  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      this.render();
    });
  }

  geometry() {
    const width = Math.max(1, this.container.clientWidth - 2 * GAP);
    const columns = Math.max(1, Math.floor((width + GAP) / (CARD_MIN_WIDTH + GAP)));
    const cardWidth = (width - GAP * (columns - 1)) / columns;
    return { columns, cardWidth, rowHeight: CARD_HEIGHT + GAP };
  }

  /** Draws the rows on screen; cards whose presence changed are drawn anew. */
  render() {
    const { columns, cardWidth, rowHeight } = this.geometry();
    this.columns = columns;
    const count = this.ids.length;
    const rows = Math.ceil(count / columns);
    this.space.style.height = `${rows * rowHeight + GAP}px`;
    const top = this.container.scrollTop;
    const first = Math.max(0, Math.floor(top / rowHeight) - BUFFER_ROWS);
    const last = Math.min(rows - 1, Math.ceil((top + this.container.clientHeight) / rowHeight) + BUFFER_ROWS);
    const start = first * columns;
    const end = Math.min(count, (last + 1) * columns);
    if (count > 0 && (this.active < start || this.active >= end)) {
      // The tab stop stays on screen, so that Tab always reaches a card.
      this.active = Math.min(count - 1, Math.max(start, Math.ceil(top / rowHeight) * columns));
    }
    const indexes = [];
    for (let index = start; index < end; index++) indexes.push(index);
    // The focused card, wherever it is in the list, is drawn too.
    const focusedId = this.focusedId();
    const focusedIndex = focusedId === undefined ? -1 : this.ids.indexOf(focusedId);
    if (focusedIndex >= 0 && (focusedIndex < start || focusedIndex >= end)) indexes.push(focusedIndex);
    const wanted = new Set(indexes.map((index) => this.ids[index]));
    for (const [id, cell] of this.cells) {
      if (!wanted.has(id)) {
        this.cells.delete(id);
        this.pool.push(cell);
      }
    }
    for (const index of indexes) {
      const id = this.ids[index];
      let cell = this.cells.get(id);
      if (!cell) {
        cell = this.pool.pop() ?? this.newCell();
        cell.hidden = false;
        this.cells.set(id, cell);
      }
      const row = Math.floor(index / columns);
      const column = index % columns;
      cell.style.transform = `translate(${GAP + column * (cardWidth + GAP)}px, ${GAP + row * rowHeight}px)`;
      cell.style.width = `${cardWidth}px`;
      cell.setAttribute("aria-posinset", String(index + 1));
      cell.setAttribute("aria-setsize", String(count));
      const button = cell.firstChild;
      button.tabIndex = index === this.active ? 0 : -1;
      const presence = this.presenceOf(id);
      if (cell.userId !== id || cell.presence !== presence) {
        cell.userId = id;
        cell.presence = presence;
        button.dataset.user = id;
        this.renderCard(button, id, presence);
      }
    }
    for (const cell of this.pool) {
      if (!cell.hidden) {
        // A cell in the pool is nobody's card: hidden, out of the tab
        // order, and without the user it showed (nothing that looks for
        // that user's card may find it).
        cell.hidden = true;
        cell.userId = undefined;
        cell.firstChild.tabIndex = -1;
        delete cell.firstChild.dataset.user;
      }
    }
    if (focusedId !== undefined && focusedIndex < 0) {
      // Its user left the list: the focus goes to the tab stop.
      const active = this.cells.get(this.ids[this.active]);
      (active ? active.firstChild : this.container).focus({ preventScroll: true });
    }
  }

  /** The user whose card has the focus, if one has. */
  focusedId() {
    const focused = document.activeElement;
    if (!focused || !this.space.contains(focused)) return undefined;
    return focused.closest(".cell")?.userId;
  }

  newCell() {
    const cell = document.createElement("div");
    cell.className = "cell";
    cell.setAttribute("role", "listitem");
    cell.style.height = `${CARD_HEIGHT}px`;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "card";
    cell.append(button);
    this.space.append(cell);
    return cell;
  }

  /** Moves the tab stop to `index`, scrolls it into view and focuses it. */
  focusIndex(index) {
    if (this.ids.length === 0) return;
    this.active = Math.max(0, Math.min(this.ids.length - 1, index));
    const { rowHeight } = this.geometry();
    const row = Math.floor(this.active / this.columns);
    const top = row * rowHeight;
    if (top < this.container.scrollTop) {
      this.container.scrollTop = top;
    } else if (top + rowHeight > this.container.scrollTop + this.container.clientHeight) {
      this.container.scrollTop = top + rowHeight - this.container.clientHeight + GAP;
    }
    this.render();
    this.cells.get(this.ids[this.active])?.firstChild.focus();
  }

  /** Focuses the tab stop (for a skip link or a closed detail). */
  focusActive() {
    this.focusIndex(this.active);
  }

  key(event) {
    const button = event.target.closest?.("button.card");
    if (!button) return;
    const index = this.ids.indexOf(button.dataset.user);
    const columns = this.columns;
    const page = Math.max(1, Math.floor(this.container.clientHeight / (CARD_HEIGHT + GAP))) * columns;
    const moves = {
      ArrowRight: index + 1,
      ArrowLeft: index - 1,
      ArrowDown: index + columns,
      ArrowUp: index - columns,
      PageDown: index + page,
      PageUp: index - page,
      Home: 0,
      End: this.ids.length - 1,
    };
    if (event.key in moves) {
      event.preventDefault();
      this.focusIndex(moves[event.key]);
    }
  }
}
