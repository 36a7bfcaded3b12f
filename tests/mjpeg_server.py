"""Live sources for tests and examples: an MJPEG-over-HTTP server and a paced in-process generator.

Both run on a camera's clock: frame ``n`` is captured at ``t0 + n / fps`` (``time.perf_counter``
seconds) and carries its number in its pixels (:func:`stamped_frame` / :func:`read_stamp`), so a
receiver can tell which frame it got and how far behind the source it is, whatever buffered it on
the way (socket, FFmpeg, a queue).

::

    with MjpegServer(fps=30, frames=60) as server:   # http://127.0.0.1:PORT/stream.mjpg
        cap = cv2.VideoCapture(server.url)
"""

from __future__ import annotations

import http.server
import threading
import time
from typing import Callable, Iterator

import cv2
import numpy as np

from retina_cli.engine.sources import Frame, Source

BITS = 16  # frame numbers up to 65535 (36 min at 30 fps)
BLOCK = 16  # pixels per bit block: survives JPEG at any quality worth using
BOUNDARY = "retinaframe"


def stamped_frame(n: int, width: int = 320, height: int = 240) -> np.ndarray:
    """Frame number ``n`` -> ``(height, width, 3)`` uint8 BGR: ``n`` in binary as a row of black/white
    blocks at the top left (read back by :func:`read_stamp`) and in big digits for a person."""
    if width < BITS * BLOCK or height < 3 * BLOCK:
        raise ValueError(f"a stamped frame needs at least {BITS * BLOCK}x{3 * BLOCK} pixels, got {width}x{height}")
    image = np.full((height, width, 3), 60, np.uint8)
    for bit in range(BITS):
        if n >> bit & 1:
            image[:BLOCK, bit * BLOCK:(bit + 1) * BLOCK] = 255
        else:
            image[:BLOCK, bit * BLOCK:(bit + 1) * BLOCK] = 0
    cv2.putText(image, str(n), (8, height - 16), cv2.FONT_HERSHEY_SIMPLEX, height / 80, (40, 220, 250), 3)
    return image


def read_stamp(image: np.ndarray) -> int:
    """``(H, W, 3)`` uint8 image made by :func:`stamped_frame` (possibly JPEG'd) -> its frame number."""
    # the centre of each block: JPEG blurs the edges between blocks
    centres = image[BLOCK // 2, BLOCK // 2 :: BLOCK][:BITS].mean(axis=-1)  # (BITS,)
    return int(sum(1 << bit for bit, v in enumerate(centres) if v > 127))


class _Clock:
    """The camera's clock: which frame is being captured now, and when frame ``n`` was."""

    def __init__(self, fps: float) -> None:
        self.fps = fps
        self.t0 = time.perf_counter()

    def now_frame(self) -> int:
        return int((time.perf_counter() - self.t0) * self.fps)

    def time_of(self, n: int) -> float:
        return self.t0 + n / self.fps

    def wait_for(self, n: int) -> None:
        delay = self.time_of(n) - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


def paced_frames(fps: float, frames: int | None = None, width: int = 320, height: int = 240,
                 image: Callable[[int], np.ndarray] | None = None) -> Iterator[Frame]:
    """Frames of a live source in real time: frame ``n`` is yielded no earlier than ``t0 + n / fps``,
    stamped ``captured`` with that time, and ``frames`` of them (None: forever).

    A reader that falls behind gets the frames it missed at once, oldest first, as from a socket
    or a driver's buffer: nothing is dropped at the source. ``image``: ``n -> (H, W, 3)`` uint8
    BGR (default :func:`stamped_frame`).
    """
    make = image or (lambda n: stamped_frame(n, width, height))
    source = Source("stream", f"paced:{fps:g}fps")
    clock = _Clock(fps)
    n = 0
    while frames is None or n < frames:
        clock.wait_for(n)
        yield Frame(source, n, make(n), clock.time_of(n))
        n += 1


class MjpegServer:
    """``multipart/x-mixed-replace`` JPEG frames at ``fps`` on ``http://127.0.0.1:PORT/stream.mjpg``.

    Like a camera, it sends the frame of the current moment: a client that reads slower than
    ``fps`` lets the socket buffers fill, then frames are skipped while the send blocks. After
    ``frames`` frames (None: never) it closes the connection, which ends the stream for the client.
    Use as a context manager; ``time_of(n)`` is when frame ``n`` was captured (perf_counter).
    """

    def __init__(self, fps: float = 30.0, frames: int | None = None, width: int = 320, height: int = 240,
                 quality: int = 80) -> None:
        self.fps, self.frames, self.size, self.quality = fps, frames, (width, height), quality
        self._stop = threading.Event()
        self._clock = _Clock(fps)
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True  # a handler blocked on a dead client's socket must not hang exit
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="mjpeg-server", daemon=True)
        self.sent = 0  # frames written to clients, over all connections

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/stream.mjpg"

    def time_of(self, n: int) -> float:
        return self._clock.time_of(n)

    def __enter__(self) -> "MjpegServer":
        self._clock = _Clock(self.fps)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def _stream(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        handler.send_header("Cache-Control", "no-cache")
        handler.end_headers()
        n = self._clock.now_frame()
        while not self._stop.is_set() and (self.frames is None or n < self.frames):
            self._clock.wait_for(n)
            ok, jpeg = cv2.imencode(".jpg", stamped_frame(n, *self.size), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            data = jpeg.tobytes()
            handler.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n".encode())
            handler.wfile.write(data + b"\r\n")
            handler.wfile.flush()
            self.sent += 1
            n = max(n + 1, self._clock.now_frame())  # a send that blocked skips the frames it missed

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path != "/stream.mjpg":
                    self.send_error(404)
                    return
                try:
                    server._stream(self)
                except (BrokenPipeError, ConnectionResetError):  # the client went away
                    pass

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

        return Handler
