// What a presence looks like on the board: Teams' colours, each with a word
// and a shape of its own, so that colour never carries availability alone.

/** The four colour groups, in the order the filters show them. */
export const GROUPS = [
  { id: "available", label: "Available", shape: "shape-available" },
  { id: "busy", label: "Busy", shape: "shape-busy" },
  { id: "away", label: "Away", shape: "shape-away" },
  { id: "offline", label: "Offline", shape: "shape-offline" },
];

const GROUP_OF = {
  Available: "available",
  AvailableIdle: "available",
  Busy: "busy",
  BusyIdle: "busy",
  DoNotDisturb: "busy",
  Away: "away",
  BeRightBack: "away",
  Offline: "offline",
  PresenceUnknown: "offline",
};

/** The colour group of an availability. */
export function groupOf(availability) {
  return GROUP_OF[availability] ?? "offline";
}

/** The symbol drawn for an availability (Do not disturb has its own). */
export function shapeOf(availability) {
  if (availability === "DoNotDisturb") return "shape-dnd";
  if (availability === "BeRightBack") return "shape-away";
  return `shape-${groupOf(availability)}`;
}

const WORDS = {
  AvailableIdle: "Available, idle",
  BusyIdle: "Busy, idle",
  InACall: "In a call",
  InAConferenceCall: "In a conference call",
  InAMeeting: "In a meeting",
};

/** An enum value in words: `DoNotDisturb` is "Do not disturb". */
export function words(value) {
  if (!value) return "";
  if (WORDS[value]) return WORDS[value];
  const parts = value.match(/[A-Z][a-z]*|[a-z]+/g) ?? [value];
  return parts.map((part, index) => (index === 0 ? part : part.toLowerCase())).join(" ");
}

const LOCATIONS = { office: "In the office", remote: "Remote", timeOff: "Time off" };

/** The work location in words, or "" when unspecified. */
export function locationWords(presence) {
  return LOCATIONS[presence.workLocation?.workLocationType] ?? "";
}

/** The status message's text, or "". */
export function statusText(presence) {
  return presence.statusMessage?.message?.content ?? "";
}

/** Whether the user is out of office. */
export function isOutOfOffice(presence) {
  return presence.outOfOfficeSettings?.isOutOfOffice === true;
}

/** The shapes: each a list of [element, class, attributes]. */
const SHAPES = {
  "shape-available": [
    ["circle", "fill", { cx: 8, cy: 8, r: 7.25 }],
    ["path", "mark", { d: "M4.6 8.3l2.3 2.3 4.6-4.9" }],
  ],
  "shape-busy": [["circle", "fill", { cx: 8, cy: 8, r: 7.25 }]],
  "shape-dnd": [
    ["circle", "fill", { cx: 8, cy: 8, r: 7.25 }],
    ["path", "mark", { d: "M4.5 8h7" }],
  ],
  "shape-away": [
    ["circle", "fill", { cx: 8, cy: 8, r: 7.25 }],
    ["path", "mark", { d: "M8 4.2V8.4l2.6 1.6" }],
  ],
  "shape-offline": [
    ["circle", "ring", { cx: 8, cy: 8, r: 6.5 }],
    ["path", "ring", { d: "M5.6 5.6l4.8 4.8M10.4 5.6l-4.8 4.8" }],
  ],
  "shape-ooo": [
    ["circle", "fill", { cx: 8, cy: 8, r: 7.25 }],
    ["path", "mark", { d: "M11.4 8H5M7.6 5.2L4.8 8l2.8 2.8" }],
  ],
};

/** One of the shapes, as SVG, hidden from screen readers (the word beside
 * it says the same). Drawn element by element rather than with <use>, whose
 * copies the page's style sheet cannot reach. */
export function symbol(id, className = "shape") {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", className);
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.setAttribute("viewBox", "0 0 16 16");
  for (const [tag, part, attributes] of SHAPES[id]) {
    const node = document.createElementNS(ns, tag);
    node.setAttribute("class", part);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
    svg.append(node);
  }
  return svg;
}

/** A countdown in words: "4 min 59 s", "2 h 5 min", "6 d 23 h". */
export function countdown(milliseconds) {
  if (milliseconds <= 0) return "now";
  const seconds = Math.ceil(milliseconds / 1000);
  const days = Math.floor(seconds / 86400);
  const hours = Math.floor((seconds % 86400) / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  const rest = seconds % 60;
  if (days > 0) return `${days} d ${hours} h`;
  if (hours > 0) return `${hours} h ${minutes} min`;
  if (minutes > 0) return `${minutes} min ${rest} s`;
  return `${rest} s`;
}
