//! A deterministic synthetic screen for tests and benchmarks.
//!
//! [`SyntheticScreen`] draws a desktop at any size ([`ScreenSize`]; 1920×1080
//! is the one the benchmarks use) and animates one of four [`Workload`]s, one
//! step per [`next_frame`](SyntheticScreen::next_frame):
//!
//! | workload | what changes each frame |
//! |---|---|
//! | [`Typing`](Workload::Typing) | a dark terminal window, full of earlier output: the next character of a fixed text appears at the cursor, lines wrap, and the terminal scrolls up one line at each new line |
//! | [`Scrolling`](Workload::Scrolling) | a full-screen light page of text lines scrolls up by one text line (12 px), a new line appears at the bottom, the scroll bar moves |
//! | [`DraggingWindow`](Workload::DraggingWindow) | a window (title bar, text) moves 5 pixels across and 3 down over the desktop, bouncing at the edges |
//! | [`Video`](Workload::Video) | a 640×360 region (smaller on a smaller screen) whose every pixel changes: a moving gradient with pseudo-random noise, like decoded video, on a static desktop |
//!
//! Every workload also draws a frame counter, the [marker](MARKER_RECT): 8 ×
//! 4 blocks of 4×4 pixels (32×16 pixels) near the top-left corner, each
//! black (0) or white (1), giving the frame number's 32 low bits (block `i`
//! is bit `i`, left to right, top to bottom). [`read_marker`] reads it back,
//! so that a viewer's screenshot tells which frame it shows (glass-to-glass
//! latency). It changes a few blocks every frame, which the codec's
//! measurements include.
//!
//! Text is drawn with a tiny built-in blocky glyph set: each character is a
//! 6×10 cell whose 5×4 blocks of 1×2 pixels are lit by the bits of a hash of
//! its code, so no font files are needed and every character looks different.
//!
//! Everything is integer arithmetic on the frame number: two screens of the
//! same size and workload produce identical frames. [`changed`] lists
//! rectangles that hold every pixel that differs from the previous frame
//! (they may hold unchanged pixels too); for the first frame, the whole
//! screen.
//!
//! [`changed`]: SyntheticScreen::changed

use crate::frame::{Bgra, Frame, Rect, ScreenSize, BYTES_PER_PIXEL};

/// Width of a text cell, in pixels.
pub const CELL_WIDTH: u32 = 6;
/// Height of a text cell, in pixels.
pub const CELL_HEIGHT: u32 = 10;
/// Side of one marker block, in pixels.
pub const MARKER_BLOCK: u32 = 4;
/// Where the frame-counter marker sits: 8 × 4 blocks at (4, 4).
pub const MARKER_RECT: Rect = Rect::new(4, 4, 8 * MARKER_BLOCK, 4 * MARKER_BLOCK);

/// Line pitch of the scrolling page: a text cell plus 2 pixels.
const PAGE_LINE: u32 = CELL_HEIGHT + 2;
/// Height of the top panel on screens at least 96 pixels tall.
const PANEL: u32 = 24;
/// Height of a window's title bar.
const TITLE_BAR: u32 = 20;
/// The video region's size on a large enough screen.
const VIDEO_WIDTH: u32 = 640;
const VIDEO_HEIGHT: u32 = 360;

/// The text typed and shown; `\n` starts a new line in the terminal.
const TEXT: &str = "$ cargo build --release -p conclave-relay\n\
   Compiling conclave-protocol v0.1.0 (/work/main/protocol)\n\
   Compiling conclave-transport v0.1.0 (/work/main/transport)\n\
   Compiling conclave-relay v0.1.0 (/work/main/relay)\n\
    Finished release profile [optimized + debuginfo] target(s) in 2m 41s\n\
$ journalctl -u conclave-relay --since today | grep -i refused | wc -l\n\
17\n\
$ sudo systemctl restart conclave-relay && systemctl status conclave-relay\n\
conclave-relay.service - Conclave relay\n\
     Loaded: loaded (/etc/systemd/system/conclave-relay.service; enabled)\n\
     Active: active (running) since Tue 2026-11-24 09:12:44 UTC; 3ms ago\n\
$ vim /etc/conclave/relay.toml\n\
The printer on the second floor stops after every third page, and the \
driver reports a paper jam although the tray is empty. Please check the \
spooler service, clear the queue and send a test page; if it fails again, \
collect the event log and attach it to the ticket before you end the session.\n";

/// What the synthetic screen animates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Workload {
    /// One character per frame appears in a terminal.
    Typing,
    /// A page of text scrolls up one line per frame.
    Scrolling,
    /// A window moves a few pixels per frame.
    DraggingWindow,
    /// A 640×360 region changes entirely every frame.
    Video,
}

impl Workload {
    /// Every workload, in the order of the benchmark tables.
    pub const ALL: [Workload; 4] = [
        Workload::Typing,
        Workload::Scrolling,
        Workload::DraggingWindow,
        Workload::Video,
    ];

    /// A short lower-case name for tables and benchmark ids.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Typing => "typing",
            Workload::Scrolling => "scrolling",
            Workload::DraggingWindow => "dragging",
            Workload::Video => "video",
        }
    }
}

/// A deterministic synthetic screen source; see the module docs.
#[derive(Debug, Clone)]
pub struct SyntheticScreen {
    frame: Frame,
    /// Frames handed out so far.
    produced: u64,
    changed: Vec<Rect>,
    scene: Scene,
}

#[derive(Debug, Clone)]
enum Scene {
    Typing(Terminal),
    Scrolling(Page),
    Dragging(Dragged),
    Video(Rect),
}

impl SyntheticScreen {
    /// A screen of `size` animating `workload`; the first
    /// [`next_frame`](Self::next_frame) returns frame 0.
    pub fn new(workload: Workload, size: ScreenSize) -> Self {
        let mut frame = desktop(size);
        let scene = match workload {
            Workload::Typing => Scene::Typing(Terminal::new(&mut frame)),
            Workload::Scrolling => Scene::Scrolling(Page::new(&mut frame)),
            Workload::DraggingWindow => Scene::Dragging(Dragged::new(&mut frame)),
            Workload::Video => Scene::Video(video_player(&mut frame)),
        };
        Self {
            frame,
            produced: 0,
            changed: Vec::new(),
            scene,
        }
    }

    /// The workload animated.
    pub fn workload(&self) -> Workload {
        match self.scene {
            Scene::Typing(_) => Workload::Typing,
            Scene::Scrolling(_) => Workload::Scrolling,
            Scene::Dragging(_) => Workload::DraggingWindow,
            Scene::Video(_) => Workload::Video,
        }
    }

    /// The screen's size.
    pub fn size(&self) -> ScreenSize {
        self.frame.size()
    }

    /// Advances one step and returns the new frame (frame 0 the first time).
    pub fn next_frame(&mut self) -> &Frame {
        let number = self.produced;
        self.changed.clear();
        if number == 0 {
            self.changed.push(self.frame.size().rect());
        } else {
            match &mut self.scene {
                Scene::Typing(t) => t.step(&mut self.frame, &mut self.changed),
                Scene::Scrolling(p) => p.step(&mut self.frame, &mut self.changed),
                Scene::Dragging(d) => d.step(&mut self.frame, &mut self.changed),
                Scene::Video(region) => {
                    draw_video(&mut self.frame, *region, number);
                    self.changed.push(*region);
                }
            }
            self.changed
                .push(MARKER_RECT.intersect(self.frame.size().rect()));
            self.changed.retain(|r| !r.is_empty());
        }
        draw_marker(&mut self.frame, number as u32);
        self.produced = number.wrapping_add(1);
        &self.frame
    }

    /// The frame last returned by [`next_frame`](Self::next_frame) (the
    /// initial desktop, without a marker, before the first call).
    pub fn frame(&self) -> &Frame {
        &self.frame
    }

    /// The number of the frame last returned (`None` before the first).
    pub fn frame_number(&self) -> Option<u64> {
        self.produced.checked_sub(1)
    }

    /// Rectangles, on screen, that hold every pixel the last
    /// [`next_frame`](Self::next_frame) changed (and maybe others). The
    /// whole screen for frame 0.
    pub fn changed(&self) -> &[Rect] {
        &self.changed
    }
}

/// Reads the frame-counter marker: the low 32 bits of the frame number, or
/// `None` when the screen is too small for it or a block is neither wholly
/// black nor wholly white.
pub fn read_marker(frame: &Frame) -> Option<u32> {
    if !frame.size().contains(MARKER_RECT) {
        return None;
    }
    let mut number = 0u32;
    for bit in 0..32u32 {
        let block = marker_block(bit);
        let mut seen = None;
        for y in block.y..block.bottom() {
            for px in frame.row_span(block.x, y, block.width)?.chunks_exact(4) {
                let value = match px {
                    [0, 0, 0, _] => false,
                    [0xff, 0xff, 0xff, _] => true,
                    _ => return None,
                };
                if seen.is_some_and(|s| s != value) {
                    return None;
                }
                seen = Some(value);
            }
        }
        if seen? {
            number |= 1 << bit;
        }
    }
    Some(number)
}

fn marker_block(bit: u32) -> Rect {
    Rect::new(
        MARKER_RECT.x + (bit % 8) * MARKER_BLOCK,
        MARKER_RECT.y + (bit / 8) * MARKER_BLOCK,
        MARKER_BLOCK,
        MARKER_BLOCK,
    )
}

fn draw_marker(frame: &mut Frame, number: u32) {
    for bit in 0..32u32 {
        let colour = if number >> bit & 1 == 1 {
            Bgra::rgb(0xff, 0xff, 0xff)
        } else {
            Bgra::rgb(0, 0, 0)
        };
        frame.fill_rect(marker_block(bit), colour);
    }
}

/// A 32-bit integer hash (the murmur3 finaliser).
fn mix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// The lit blocks of a character: bit `row * 5 + column` of 5 × 4 blocks.
fn glyph_bits(c: char) -> u32 {
    if c.is_whitespace() {
        return 0;
    }
    match mix(c as u32 ^ 0x9e37_79b9) & 0xf_ffff {
        0 => 0x0_4444,
        bits => bits,
    }
}

/// Draws one character cell at `(x, y)`: the background `bg` over the whole
/// 6×10 cell, then the glyph in `fg`; only the part inside `clip` is drawn.
fn draw_char(frame: &mut Frame, x: u32, y: u32, c: char, fg: Bgra, bg: Bgra, clip: Rect) {
    let cell = Rect::new(x, y, CELL_WIDTH, CELL_HEIGHT);
    let visible = cell.intersect(clip).intersect(frame.size().rect());
    if visible.is_empty() {
        return;
    }
    let bits = glyph_bits(c);
    for py in visible.y..visible.bottom() {
        let Some(span) = frame.row_span_mut(visible.x, py, visible.width) else {
            continue;
        };
        let row = py - y;
        for (i, px) in span.chunks_exact_mut(BYTES_PER_PIXEL).enumerate() {
            let col = visible.x - x + i as u32;
            let lit = (1..CELL_HEIGHT - 1).contains(&row)
                && col < 5
                && bits >> ((row - 1) / 2 * 5 + col) & 1 == 1;
            px.copy_from_slice(if lit { &fg.0 } else { &bg.0 });
        }
    }
}

/// Draws `text` from `(x, y)` on one line, clipped to `clip`.
fn draw_text(frame: &mut Frame, x: u32, y: u32, text: &str, fg: Bgra, bg: Bgra, clip: Rect) {
    let mut cx = x;
    for c in text.chars() {
        if cx >= clip.right() {
            break;
        }
        draw_char(frame, cx, y, c, fg, bg, clip);
        cx = cx.saturating_add(CELL_WIDTH);
    }
}

/// The panel's height for a screen this tall.
fn panel_height(size: ScreenSize) -> u32 {
    if size.height() >= 96 {
        PANEL
    } else {
        size.height() / 4
    }
}

/// The static desktop: a top panel with text, a gradient wallpaper, a column
/// of icons with labels.
fn desktop(size: ScreenSize) -> Frame {
    let mut f = Frame::filled(size, Bgra::default());
    let (w, h) = (size.width(), size.height());
    let panel = panel_height(size);
    for y in panel..h {
        // A vertical gradient from slate blue to a darker blue.
        let t = (y - panel) * 64 / h.max(1);
        let colour = Bgra::rgb(
            (0x2b_u32.saturating_sub(t / 4)) as u8,
            (0x50_u32.saturating_sub(t / 2)) as u8,
            (0x6e_u32.saturating_sub(t / 2)) as u8,
        );
        f.fill_rect(Rect::new(0, y, w, 1), colour);
    }
    let panel_rect = Rect::new(0, 0, w, panel);
    f.fill_rect(panel_rect, Bgra::rgb(0x22, 0x22, 0x22));
    let grey = Bgra::rgb(0xdd, 0xdd, 0xdd);
    let panel_bg = Bgra::rgb(0x22, 0x22, 0x22);
    draw_text(
        &mut f,
        48,
        7,
        "Activities   Terminal   Files   Conclave support session",
        grey,
        panel_bg,
        panel_rect,
    );
    draw_text(
        &mut f,
        w.saturating_sub(120),
        7,
        "Tue 09:12  en  100%",
        grey,
        panel_bg,
        panel_rect,
    );
    let labels = ["Home", "Trash", "Reports", "tickets.ods", "vpn.conf"];
    let screen = size.rect();
    for (i, label) in labels.iter().enumerate() {
        let y = panel + 16 + i as u32 * 80;
        f.fill_rect(
            Rect::new(28, y, 40, 40).intersect(screen),
            Bgra::rgb(0xe8, 0xc5, 0x4f),
        );
        f.fill_rect(
            Rect::new(32, y + 4, 32, 8).intersect(screen),
            Bgra::rgb(0xc9, 0x9a, 0x2e),
        );
        let bg = f.pixel(20, y + 46).unwrap_or_default();
        draw_text(
            &mut f,
            16,
            y + 46,
            label,
            Bgra::rgb(0xff, 0xff, 0xff),
            bg,
            screen,
        );
    }
    f
}

/// Draws a window's frame: title bar with `title`, a 1-pixel border, the
/// body filled with `body`. Returns the body's rectangle (inside the border,
/// below the title bar).
fn draw_window(frame: &mut Frame, rect: Rect, title: &str, body: Bgra) -> Rect {
    let border = Bgra::rgb(0x10, 0x10, 0x10);
    let bar = Bgra::rgb(0x3a, 0x3f, 0x4b);
    frame.fill_rect(rect, border);
    let inner = Rect::new(
        rect.x + 1,
        rect.y + 1,
        rect.width.saturating_sub(2),
        rect.height.saturating_sub(2),
    );
    let bar_rect = Rect::new(inner.x, inner.y, inner.width, TITLE_BAR.min(inner.height));
    frame.fill_rect(bar_rect, bar);
    draw_text(
        frame,
        inner.x + 8,
        inner.y + 5,
        title,
        Bgra::rgb(0xf0, 0xf0, 0xf0),
        bar,
        bar_rect,
    );
    // Three window buttons at the right of the title bar.
    for i in 0..3u32 {
        let bx = inner.right().saturating_sub(18 * (i + 1));
        frame.fill_rect(
            Rect::new(bx, inner.y + 5, 10, 10).intersect(bar_rect),
            Bgra::rgb(0x80, 0x86, 0x90),
        );
    }
    let body_rect = Rect::new(
        inner.x,
        inner.y + bar_rect.height,
        inner.width,
        inner.height - bar_rect.height,
    );
    frame.fill_rect(body_rect, body);
    body_rect
}

/// The terminal of the typing workload.
#[derive(Debug, Clone)]
struct Terminal {
    /// Where the character cells are.
    cells: Rect,
    cols: u32,
    rows: u32,
    col: u32,
    row: u32,
    /// The next character of [`TEXT`] to type.
    next: usize,
}

impl Terminal {
    const BG: Bgra = Bgra::rgb(0x1e, 0x1e, 0x1e);
    const FG: Bgra = Bgra::rgb(0x9c, 0xe3, 0x8a);
    const CURSOR: Bgra = Bgra::rgb(0xd0, 0xd0, 0xd0);

    fn new(frame: &mut Frame) -> Self {
        let size = frame.size();
        let panel = panel_height(size);
        let usable = size.height() - panel;
        let window = Rect::new(
            size.width() / 8,
            panel + usable / 10,
            size.width() * 3 / 4,
            usable * 3 / 4,
        );
        let body = draw_window(frame, window, "support@customer-pc: ~", Self::BG);
        let cols = body.width.saturating_sub(8) / CELL_WIDTH;
        let rows = body.height.saturating_sub(8) / CELL_HEIGHT;
        let cells = Rect::new(
            body.x + 4,
            body.y + 4,
            cols * CELL_WIDTH,
            rows * CELL_HEIGHT,
        );
        let mut t = Self {
            cells,
            cols,
            rows,
            col: 0,
            row: 0,
            next: 0,
        };
        // Earlier output fills the terminal before typing starts, as in a
        // shell in use: from the first new line on, it scrolls.
        let mut ignored = Vec::new();
        while t.cols > 0 && t.row + 1 < t.rows {
            t.type_next(frame, &mut ignored);
        }
        t.draw_cursor(frame);
        t
    }

    fn cell(&self, col: u32, row: u32) -> Rect {
        Rect::new(
            self.cells.x + col * CELL_WIDTH,
            self.cells.y + row * CELL_HEIGHT,
            CELL_WIDTH,
            CELL_HEIGHT,
        )
    }

    fn draw_cursor(&self, frame: &mut Frame) {
        if self.cols > 0 && self.rows > 0 {
            frame.fill_rect(self.cell(self.col, self.row), Self::CURSOR);
        }
    }

    fn step(&mut self, frame: &mut Frame, changed: &mut Vec<Rect>) {
        if self.cols == 0 || self.rows == 0 {
            return;
        }
        // The cursor's cell is redrawn by the character typed into it (or
        // cleared, for a new line).
        let old = self.cell(self.col, self.row);
        frame.fill_rect(old, Self::BG);
        changed.push(old);
        self.type_next(frame, changed);
        self.draw_cursor(frame);
        changed.push(self.cell(self.col, self.row));
    }

    fn type_next(&mut self, frame: &mut Frame, changed: &mut Vec<Rect>) {
        let c = TEXT
            .as_bytes()
            .get(self.next)
            .map_or(' ', |&b| char::from(b));
        self.next = (self.next + 1) % TEXT.len();
        if c == '\n' {
            self.new_line(frame, changed);
            return;
        }
        let cell = self.cell(self.col, self.row);
        draw_char(frame, cell.x, cell.y, c, Self::FG, Self::BG, self.cells);
        self.col += 1;
        if self.col == self.cols {
            self.new_line(frame, changed);
        }
    }

    fn new_line(&mut self, frame: &mut Frame, changed: &mut Vec<Rect>) {
        self.col = 0;
        if self.row + 1 < self.rows {
            self.row += 1;
            return;
        }
        // Full: everything moves up one line, the last line is cleared.
        scroll_up(frame, self.cells, CELL_HEIGHT, Self::BG);
        changed.push(self.cells);
    }
}

/// Moves the pixels of `area` up by `by` rows and paints the rows freed at
/// the bottom with `fill`.
fn scroll_up(frame: &mut Frame, area: Rect, by: u32, fill: Bgra) {
    let stride = frame.stride();
    let span = area.width as usize * BYTES_PER_PIXEL;
    let data = frame.as_bytes_mut();
    for y in area.y..area.bottom().saturating_sub(by) {
        let to = y as usize * stride + area.x as usize * BYTES_PER_PIXEL;
        let from = to + by as usize * stride;
        if from + span <= data.len() {
            data.copy_within(from..from + span, to);
        }
    }
    let freed = Rect::new(
        area.x,
        area.bottom().saturating_sub(by).max(area.y),
        area.width,
        by.min(area.height),
    );
    frame.fill_rect(freed, fill);
}

/// The page of the scrolling workload.
#[derive(Debug, Clone)]
struct Page {
    /// The text area.
    area: Rect,
    /// The scroll bar's track.
    track: Rect,
    /// Characters that fit on a line.
    cols: u32,
    /// The document line shown at the top.
    top: u64,
}

impl Page {
    const BG: Bgra = Bgra::rgb(0xfa, 0xfa, 0xf7);
    const FG: Bgra = Bgra::rgb(0x20, 0x20, 0x20);
    const TRACK: Bgra = Bgra::rgb(0xe4, 0xe4, 0xe4);
    const THUMB: Bgra = Bgra::rgb(0x9a, 0x9a, 0x9a);
    const THUMB_HEIGHT: u32 = 40;

    fn new(frame: &mut Frame) -> Self {
        let size = frame.size();
        let panel = panel_height(size);
        // A maximised browser: its toolbar, then the page and a scroll bar.
        let toolbar = Rect::new(0, panel, size.width(), 32.min(size.height() - panel));
        frame.fill_rect(toolbar, Bgra::rgb(0xee, 0xee, 0xee));
        let address =
            Rect::new(80, panel + 6, size.width().saturating_sub(160), 20).intersect(toolbar);
        frame.fill_rect(address, Bgra::rgb(0xff, 0xff, 0xff));
        draw_text(
            frame,
            address.x + 8,
            address.y + 5,
            "https://intranet.example/kb/printer-troubleshooting",
            Bgra::rgb(0x30, 0x30, 0x30),
            Bgra::rgb(0xff, 0xff, 0xff),
            address,
        );
        let top = toolbar.bottom();
        let bar = 12.min(size.width());
        let area = Rect::new(0, top, size.width() - bar, size.height() - top);
        let track = Rect::new(size.width() - bar, top, bar, size.height() - top);
        let margin = (area.width / 10).min(120);
        let cols = area.width.saturating_sub(2 * margin) / CELL_WIDTH;
        let page = Self {
            area,
            track,
            cols,
            top: 0,
        };
        page.draw_all(frame);
        page
    }

    /// Draws every visible line and the scroll bar from scratch.
    fn draw_all(&self, frame: &mut Frame) {
        frame.fill_rect(self.area, Self::BG);
        let mut y = self.area.y;
        let mut line = self.top;
        while y < self.area.bottom() {
            self.draw_line(frame, line, y);
            y += PAGE_LINE;
            line += 1;
        }
        self.draw_scroll_bar(frame);
    }

    fn margin(&self) -> u32 {
        (self.area.width / 10).min(120)
    }

    /// Document line `n`: a slice of the text, paragraphs separated by an
    /// empty line every ninth line.
    fn line_text(&self, n: u64) -> String {
        if n % 9 == 8 || self.cols == 0 {
            return String::new();
        }
        let len = self.cols - mix(n as u32) % (self.cols / 3 + 1);
        let start = (n as usize).wrapping_mul(37) % TEXT.len();
        TEXT.chars()
            .cycle()
            .skip(start)
            .take(len as usize)
            .map(|c| if c == '\n' { ' ' } else { c })
            .collect()
    }

    fn draw_line(&self, frame: &mut Frame, n: u64, y: u32) {
        let band = Rect::new(self.area.x, y, self.area.width, PAGE_LINE).intersect(self.area);
        frame.fill_rect(band, Self::BG);
        let text = self.line_text(n);
        draw_text(
            frame,
            self.area.x + self.margin(),
            y + 1,
            &text,
            Self::FG,
            Self::BG,
            self.area,
        );
    }

    fn draw_scroll_bar(&self, frame: &mut Frame) {
        frame.fill_rect(self.track, Self::TRACK);
        let travel = self.track.height.saturating_sub(Self::THUMB_HEIGHT).max(1);
        let offset = (self.top.wrapping_mul(3) % u64::from(travel)) as u32;
        let thumb = Rect::new(
            self.track.x + 2,
            self.track.y + offset,
            self.track.width.saturating_sub(4),
            Self::THUMB_HEIGHT,
        )
        .intersect(self.track);
        frame.fill_rect(thumb, Self::THUMB);
    }

    fn step(&mut self, frame: &mut Frame, changed: &mut Vec<Rect>) {
        self.top += 1;
        if self.area.is_empty() {
            return;
        }
        scroll_up(frame, self.area, PAGE_LINE, Self::BG);
        // Redraw the slots that reach into the freed rows at the bottom.
        let visible = u64::from(self.area.height.div_ceil(PAGE_LINE));
        for slot in visible.saturating_sub(2)..visible {
            let y = self.area.y + slot as u32 * PAGE_LINE;
            self.draw_line(frame, self.top + slot, y);
        }
        self.draw_scroll_bar(frame);
        changed.push(self.area);
        changed.push(self.track);
    }
}

/// The window of the dragging workload.
#[derive(Debug, Clone)]
struct Dragged {
    /// The desktop behind the window.
    background: Frame,
    /// The window's pixels.
    image: Frame,
    /// Where it is now.
    at: Rect,
    dx: i32,
    dy: i32,
    /// Where it may go.
    bounds: Rect,
}

impl Dragged {
    fn new(frame: &mut Frame) -> Self {
        let background = frame.clone();
        let size = frame.size();
        let panel = panel_height(size);
        let bounds = Rect::new(0, panel, size.width(), size.height() - panel);
        let width = (size.width() * 3 / 10).max(1);
        let height = (bounds.height * 4 / 10).max(1);
        let image_size = ScreenSize::new(width, height).unwrap_or(size);
        let mut image = Frame::filled(image_size, Bgra::default());
        let body = draw_window(
            &mut image,
            image_size.rect(),
            "Notes - printer ticket 4711.txt",
            Bgra::rgb(0xff, 0xff, 0xff),
        );
        let mut y = body.y + 6;
        let mut n = 0usize;
        let words: Vec<&str> = TEXT.split_whitespace().collect();
        while y + CELL_HEIGHT <= body.bottom() {
            let start = (n * 7) % words.len().max(1);
            let line: Vec<&str> = words.iter().cycle().skip(start).take(9).copied().collect();
            draw_text(
                &mut image,
                body.x + 8,
                y,
                &line.join(" "),
                Bgra::rgb(0x20, 0x20, 0x20),
                Bgra::rgb(0xff, 0xff, 0xff),
                body,
            );
            y += PAGE_LINE;
            n += 1;
        }
        let at = Rect::new(
            bounds.x + bounds.width / 10,
            bounds.y + bounds.height / 10,
            image_size.width(),
            image_size.height(),
        );
        let d = Self {
            background,
            image,
            at,
            dx: 5,
            dy: 3,
            bounds,
        };
        d.draw(frame);
        d
    }

    fn draw(&self, frame: &mut Frame) {
        let visible = self.at.intersect(frame.size().rect());
        for y in visible.y..visible.bottom() {
            let Some(from) =
                self.image
                    .row_span(visible.x - self.at.x, y - self.at.y, visible.width)
            else {
                continue;
            };
            if let Some(to) = frame.row_span_mut(visible.x, y, visible.width) {
                to.copy_from_slice(from);
            }
        }
    }

    fn step(&mut self, frame: &mut Frame, changed: &mut Vec<Rect>) {
        let old = self.at;
        let max_x = self.bounds.right().saturating_sub(self.at.width);
        let max_y = self.bounds.bottom().saturating_sub(self.at.height);
        let next = |pos: u32, d: &mut i32, lo: u32, hi: u32| -> u32 {
            let moved = i64::from(pos) + i64::from(*d);
            if moved < i64::from(lo) || moved > i64::from(hi) {
                *d = -*d;
            }
            (i64::from(pos) + i64::from(*d)).clamp(i64::from(lo), i64::from(hi)) as u32
        };
        self.at.x = next(self.at.x, &mut self.dx, self.bounds.x, max_x);
        self.at.y = next(self.at.y, &mut self.dy, self.bounds.y, max_y);
        frame.copy_rect_from(&self.background, old);
        self.draw(frame);
        changed.push(old.union(self.at).intersect(frame.size().rect()));
    }
}

/// Draws the video player's window and returns the video region.
fn video_player(frame: &mut Frame) -> Rect {
    let size = frame.size();
    let panel = panel_height(size);
    let usable = Rect::new(0, panel, size.width(), size.height() - panel);
    let width = VIDEO_WIDTH.min(usable.width);
    let height = VIDEO_HEIGHT.min(usable.height);
    let region = Rect::new(
        usable.x + (usable.width - width) / 2,
        usable.y + (usable.height - height) / 2,
        width,
        height,
    );
    // The player's window around the video, where it fits.
    let window = Rect::new(
        region.x.saturating_sub(1),
        region.y.saturating_sub(TITLE_BAR + 1),
        width + 2,
        height + TITLE_BAR + 2,
    )
    .intersect(usable);
    draw_window(frame, window, "Video call - camera", Bgra::rgb(0, 0, 0));
    draw_video(frame, region, 0);
    region
}

/// Fills the video region with frame `t` of the moving gradient and noise.
/// Green is a gradient that moves one step per frame with no noise, so every
/// pixel changes in every frame.
fn draw_video(frame: &mut Frame, region: Rect, t: u64) {
    let t = t as u32;
    for y in region.y..region.bottom() {
        let v = y - region.y;
        let Some(span) = frame.row_span_mut(region.x, y, region.width) else {
            continue;
        };
        for (u, px) in span.chunks_exact_mut(BYTES_PER_PIXEL).enumerate() {
            let u = u as u32;
            let noise = mix(u | v << 12 | t << 22 ^ t.rotate_left(7));
            let r = (u / 3 + t * 2).wrapping_add(noise & 0x0f);
            let g = v / 2 + u / 5 + t;
            let b = ((u + v) / 4 + t * 3).wrapping_add(noise >> 8 & 0x0f);
            px.copy_from_slice(&[b as u8, g as u8, r as u8, 0xff]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes() -> Vec<ScreenSize> {
        [(320, 200), (333, 217), (64, 40), (7, 5), (1, 1)]
            .iter()
            .map(|&(w, h)| ScreenSize::new(w, h).unwrap())
            .collect()
    }

    #[test]
    fn changed_rectangles_hold_every_changed_pixel() {
        for size in sizes() {
            for workload in Workload::ALL {
                let mut screen = SyntheticScreen::new(workload, size);
                let mut previous = screen.next_frame().clone();
                assert_eq!(screen.changed(), &[size.rect()]);
                for n in 1..150u64 {
                    let frame = screen.next_frame().clone();
                    assert_eq!(screen.frame_number(), Some(n));
                    for rect in screen.changed() {
                        assert!(size.contains(*rect), "{rect:?} off a {size} screen");
                    }
                    for y in 0..size.height() {
                        for x in 0..size.width() {
                            if frame.pixel(x, y) != previous.pixel(x, y) {
                                assert!(
                                    screen.changed().iter().any(|r| r.contains_point(x, y)),
                                    "{workload:?} {size} frame {n}: ({x}, {y}) changed outside {:?}",
                                    screen.changed()
                                );
                            }
                        }
                    }
                    previous = frame;
                }
            }
        }
    }

    #[test]
    fn two_screens_draw_the_same_frames() {
        let size = ScreenSize::new(200, 120).unwrap();
        for workload in Workload::ALL {
            let mut a = SyntheticScreen::new(workload, size);
            let mut b = SyntheticScreen::new(workload, size);
            for _ in 0..20 {
                assert_eq!(a.next_frame(), b.next_frame());
            }
        }
    }

    #[test]
    fn the_marker_reads_back_the_frame_number() {
        let size = ScreenSize::new(160, 100).unwrap();
        for workload in Workload::ALL {
            let mut screen = SyntheticScreen::new(workload, size);
            for n in 0..40u32 {
                assert_eq!(read_marker(screen.next_frame()), Some(n), "{workload:?}");
            }
        }
        let mut f = Frame::filled(size, Bgra::rgb(0, 0, 0));
        draw_marker(&mut f, 0xdead_beef);
        assert_eq!(read_marker(&f), Some(0xdead_beef));
        f.fill_rect(Rect::new(5, 5, 1, 1), Bgra::rgb(0x80, 0x80, 0x80));
        assert_eq!(read_marker(&f), None);
        let tiny = Frame::filled(ScreenSize::new(20, 20).unwrap(), Bgra::default());
        assert_eq!(read_marker(&tiny), None);
    }

    #[test]
    fn each_workload_changes_what_it_says() {
        let size = ScreenSize::new(1920, 1080).unwrap();
        let count = |w: Workload, frames: usize| {
            let mut screen = SyntheticScreen::new(w, size);
            let mut previous = screen.next_frame().clone();
            let mut out = Vec::new();
            for _ in 0..frames {
                let f = screen.next_frame();
                let changed = f
                    .as_bytes()
                    .chunks_exact(4)
                    .zip(previous.as_bytes().chunks_exact(4))
                    .filter(|(a, b)| a != b)
                    .count();
                out.push(changed);
                previous = f.clone();
            }
            out
        };
        // Typing: a character cell or two and the marker.
        let typing = count(Workload::Typing, 3);
        assert!(typing.iter().all(|&n| n > 0 && n < 300), "{typing:?}");
        // Video: every pixel of the 640×360 region, plus the marker.
        let video = count(Workload::Video, 2);
        assert!(
            video
                .iter()
                .all(|&n| (640 * 360..640 * 360 + 600).contains(&n)),
            "{video:?}"
        );
        // Scrolling: most of the screen.
        let scrolling = count(Workload::Scrolling, 2);
        assert!(scrolling.iter().all(|&n| n > 100_000), "{scrolling:?}");
        // Dragging: about the window's outline moves.
        let dragging = count(Workload::DraggingWindow, 2);
        assert!(dragging.iter().all(|&n| n > 5_000), "{dragging:?}");
    }

    #[test]
    fn the_terminal_wraps_and_scrolls() {
        // A small terminal fills within a few hundred characters.
        let size = ScreenSize::new(120, 100).unwrap();
        let mut screen = SyntheticScreen::new(Workload::Typing, size);
        let mut scrolled = false;
        for _ in 0..800 {
            screen.next_frame();
            let Scene::Typing(t) = &screen.scene else {
                unreachable!()
            };
            assert!(t.col < t.cols && t.row < t.rows);
            scrolled |= screen.changed().contains(&t.cells);
        }
        assert!(scrolled, "the terminal never scrolled");
    }

    #[test]
    fn a_scrolled_page_is_the_page_drawn_at_that_position() {
        for (w, h) in [(320, 200), (301, 163)] {
            let size = ScreenSize::new(w, h).unwrap();
            let mut screen = SyntheticScreen::new(Workload::Scrolling, size);
            for _ in 0..30 {
                screen.next_frame();
            }
            let Scene::Scrolling(page) = &screen.scene else {
                unreachable!()
            };
            let mut redrawn = screen.frame().clone();
            page.draw_all(&mut redrawn);
            assert!(
                redrawn == *screen.frame(),
                "{size}: scrolling drew a different page"
            );
        }
    }

    #[test]
    fn glyphs_differ_and_spaces_are_blank() {
        assert_eq!(glyph_bits(' '), 0);
        assert_eq!(glyph_bits('\n'), 0);
        let letters: std::collections::HashSet<u32> = ('!'..='~').map(glyph_bits).collect();
        assert!(letters.len() > 90);
        assert!(!letters.contains(&0));
    }
}
