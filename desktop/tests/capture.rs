//! Capture under a real X server (Xvfb, started here): what a program draws
//! on the display is what a capture returns, pixel for pixel. Requirement
//! R21 (the picture a presenter shares is the picture on its screen).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use conclave_desktop::capture::{CaptureError, X11Capture};
use conclave_desktop::xvfb::Xvfb;
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{self, ConnectionExt as _, CreateGCAux, Rectangle};

/// Fills rectangles on the root window, as any program drawing on the
/// screen would, and waits until the server has done it.
fn draw(display: &str, rects: &[(u32, Rectangle)]) {
    let (conn, screen) = x11rb::connect(Some(display)).unwrap();
    let root = conn.setup().roots[screen].root;
    let gc = conn.generate_id().unwrap();
    conn.create_gc(gc, root, &CreateGCAux::new()).unwrap();
    for (color, r) in rects {
        conn.change_gc(gc, &xproto::ChangeGCAux::new().foreground(*color))
            .unwrap();
        conn.poly_fill_rectangle(root, gc, &[*r]).unwrap();
    }
    // A round trip: everything before it has been processed.
    conn.get_input_focus().unwrap().reply().unwrap();
}

fn rect(x: i16, y: i16, width: u16, height: u16) -> Rectangle {
    Rectangle {
        x,
        y,
        width,
        height,
    }
}

/// The BGRA bytes of pixel (x, y) in a capture `width` wide.
fn pixel(buf: &[u8], width: u16, x: usize, y: usize) -> [u8; 4] {
    let i = (y * usize::from(width) + x) * 4;
    buf[i..i + 4].try_into().unwrap()
}

#[test]
fn r21_capture_returns_what_was_drawn_pixel_for_pixel() {
    let x = Xvfb::start(800, 600).unwrap();
    draw(
        &x.display,
        &[
            (0x00_20_40_60, rect(0, 0, 800, 600)),
            (0x00_ff_00_00, rect(10, 20, 30, 40)),
            (0x00_00_ff_00, rect(700, 500, 100, 100)),
            (0x00_12_34_56, rect(399, 299, 1, 1)),
        ],
    );
    let mut cap = X11Capture::connect(Some(&x.display)).unwrap();
    assert!(cap.uses_shared_memory(), "Xvfb offers MIT-SHM 1.2");
    let mut buf = Vec::new();
    let (w, h) = cap.capture(&mut buf).unwrap();
    assert_eq!((w, h), (800, 600));
    assert_eq!(buf.len(), 800 * 600 * 4);
    // BGRA: blue, green, red, alpha.
    assert_eq!(pixel(&buf, w, 0, 0), [0x60, 0x40, 0x20, 0xff]);
    assert_eq!(pixel(&buf, w, 10, 20), [0x00, 0x00, 0xff, 0xff]);
    assert_eq!(pixel(&buf, w, 39, 59), [0x00, 0x00, 0xff, 0xff]);
    assert_eq!(pixel(&buf, w, 40, 60), [0x60, 0x40, 0x20, 0xff]);
    assert_eq!(pixel(&buf, w, 799, 599), [0x00, 0xff, 0x00, 0xff]);
    assert_eq!(pixel(&buf, w, 399, 299), [0x56, 0x34, 0x12, 0xff]);
    assert_eq!(pixel(&buf, w, 400, 299), [0x60, 0x40, 0x20, 0xff]);

    // A change on the screen shows in the next capture.
    draw(&x.display, &[(0x00_ab_cd_ef, rect(0, 0, 1, 1))]);
    cap.capture(&mut buf).unwrap();
    assert_eq!(pixel(&buf, w, 0, 0), [0xef, 0xcd, 0xab, 0xff]);

    // Without shared memory the picture is the same.
    let mut plain = X11Capture::connect_without_shared_memory(Some(&x.display)).unwrap();
    assert!(!plain.uses_shared_memory());
    let mut again = Vec::new();
    plain.capture(&mut again).unwrap();
    assert!(again == buf, "GetImage and MIT-SHM captures differ");
}

#[test]
fn r21_monitors_are_listed_and_selection_is_checked() {
    let x = Xvfb::start(640, 480).unwrap();
    let mut cap = X11Capture::connect(Some(&x.display)).unwrap();
    let monitors = cap.monitors().to_vec();
    assert!(!monitors.is_empty());
    let m = cap.monitor().unwrap().clone();
    assert_eq!((m.width, m.height), (640, 480));
    assert!(matches!(
        cap.select(monitors.len()),
        Err(CaptureError::NoSuchMonitor { .. })
    ));
    cap.select(0).unwrap();
}

#[test]
fn a_missing_display_is_a_clear_error() {
    let err = X11Capture::connect(Some(":4999")).unwrap_err();
    assert!(matches!(err, CaptureError::Connect { .. }), "{err}");
    assert!(err.to_string().contains(":4999"));
}

/// A window of `color` at (x, y), mapped.
fn window(
    conn: &impl Connection,
    root: u32,
    (x, y, w, h): (i16, i16, u16, u16),
    color: u32,
) -> u32 {
    let id = conn.generate_id().unwrap();
    conn.create_window(
        x11rb::COPY_DEPTH_FROM_PARENT,
        id,
        root,
        x,
        y,
        w,
        h,
        0,
        xproto::WindowClass::INPUT_OUTPUT,
        x11rb::COPY_FROM_PARENT,
        &xproto::CreateWindowAux::new().background_pixel(color),
    )
    .unwrap();
    conn.map_window(id).unwrap();
    conn.get_input_focus().unwrap().reply().unwrap();
    id
}

/// R21: presenting one window shares that window alone: what it draws,
/// not what covers it or lies beside it; its size is followed, and a
/// closed window is a clear error.
#[test]
fn r21_a_window_is_captured_alone_whatever_covers_it() {
    let x = Xvfb::start(640, 480).unwrap();
    let (conn, screen) = x11rb::connect(Some(&x.display)).unwrap();
    let root = conn.setup().roots[screen].root;
    draw(&x.display, &[(0x00_20_40_60, rect(0, 0, 640, 480))]);
    let shared = window(&conn, root, (100, 100, 200, 150), 0x00_ff_00_00);
    // Another window covers the shared one's lower right quarter.
    let _cover = window(&conn, root, (200, 175, 200, 150), 0x00_00_ff_00);
    let mut cap = X11Capture::connect(Some(&x.display)).unwrap();
    cap.select_window(shared).unwrap();
    // The shared window draws after it is redirected.
    let gc = conn.generate_id().unwrap();
    conn.create_gc(gc, shared, &CreateGCAux::new().foreground(0x00_00_00_ff))
        .unwrap();
    conn.poly_fill_rectangle(shared, gc, &[rect(0, 0, 20, 20)])
        .unwrap();
    conn.get_input_focus().unwrap().reply().unwrap();

    let mut buf = Vec::new();
    let (w, h) = cap.capture(&mut buf).unwrap();
    assert_eq!((w, h), (200, 150));
    let blue = [0xff, 0x00, 0x00, 0xff];
    let red = [0x00, 0x00, 0xff, 0xff];
    assert_eq!(pixel(&buf, w, 5, 5), blue);
    assert_eq!(pixel(&buf, w, 50, 50), red);
    // Covered on screen by the green window: the capture has the shared
    // window's own red.
    assert_eq!(pixel(&buf, w, 150, 120), red);
    assert!(buf.chunks_exact(4).all(|p| p == blue || p == red));

    // Resized: followed.
    conn.configure_window(
        shared,
        &xproto::ConfigureWindowAux::new().width(240).height(100),
    )
    .unwrap();
    conn.get_input_focus().unwrap().reply().unwrap();
    assert_eq!(cap.capture(&mut buf).unwrap(), (240, 100));
    // Made larger than any screen: refused, nothing allocated for it.
    conn.configure_window(
        shared,
        &xproto::ConfigureWindowAux::new().width(4000).height(3000),
    )
    .unwrap();
    conn.get_input_focus().unwrap().reply().unwrap();
    assert!(matches!(
        cap.capture(&mut buf),
        Err(CaptureError::Window { reason, .. }) if reason.contains("larger than the screen")
    ));
    // Chosen again: captured again, once redirected.
    conn.configure_window(
        shared,
        &xproto::ConfigureWindowAux::new().width(240).height(100),
    )
    .unwrap();
    conn.get_input_focus().unwrap().reply().unwrap();
    cap.select_window(shared).unwrap();
    assert_eq!(cap.capture(&mut buf).unwrap(), (240, 100));

    // Closed: a clear error, not a picture of something else.
    conn.destroy_window(shared).unwrap();
    conn.get_input_focus().unwrap().reply().unwrap();
    assert!(matches!(
        cap.capture(&mut buf),
        Err(CaptureError::Window { window, .. }) if window == shared
    ));
    assert!(matches!(
        cap.select_window(0x7fff_fff0),
        Err(CaptureError::Window { .. })
    ));
}
