"""Drives docs/embedding.md's Tk or Qt chat window as a user would, in its own process.

    python gui_drive.py tk|qt MODEL|- STEP_S

The example's code is imported from chat_app.py in the current folder. Each generation
step is slowed by STEP_S (the 2.7B's pace) so that Stop and the close land mid-reply. The
script waits for the model, sends a message, presses Stop after the first piece, sends
another and closes the window after its first piece; with a MODEL that cannot load, it
waits for the error and closes. It prints what it saw as one JSON line.
"""

import json
import sys
import time

TIMEOUT_S = 120


def slow_steps(step_s: float) -> None:
    import ctranslate2  # after prepare(), as the example imports it

    original = ctranslate2.Generator.generate_tokens

    def generate_tokens(self, *args, **kwargs):
        for step in original(self, *args, **kwargs):
            time.sleep(step_s)
            yield step

    ctranslate2.Generator.generate_tokens = generate_tokens


class TkView:
    """What the script reads and presses on the Tk window."""

    def __init__(self, window):
        self.window = window

    def ready(self):
        return str(self.window.send_button["state"]) == "normal"

    def status(self):
        return self.window.status.cget("text")

    def log(self):
        return self.window.log.get("1.0", "end").rstrip("\n")

    def send(self, text):
        self.window.entry.insert(0, text)
        self.window.send_button.invoke()

    def press_stop(self):
        self.window.stop_button.invoke()

    def close(self):
        self.window.close()  # what the window manager's close button calls


class QtView(TkView):
    def ready(self):
        return self.window.send_button.isEnabled()

    def status(self):
        return self.window.status.text()

    def log(self):
        return self.window.log.toPlainText()

    def send(self, text):
        self.window.entry.setText(text)
        self.window.send_button.click()

    def press_stop(self):
        self.window.stop_button.click()


def script(view, seen):
    """The user's actions, as a generator that yields while it waits."""
    def until(test):
        deadline = time.monotonic() + TIMEOUT_S
        while not test():
            assert time.monotonic() < deadline, seen
            yield

    yield from until(lambda: view.ready() or "cannot load" in view.status())
    seen["loaded_log"] = view.log()
    if not view.ready():
        view.close()
        return
    for turn, last in (("Tell me a long story about the sea.", False),
                       ("And about the mountains?", True)):
        view.send(turn)
        yield from until(lambda turn=turn: first_piece(view.log(), turn))
        if last:
            seen["closed_mid_reply"] = not view.ready()
            seen["log"] = view.log()
            view.close()
            return
        view.press_stop()
        pressed = time.monotonic()
        yield from until(view.ready)
        seen["stop_s"] = time.monotonic() - pressed


def first_piece(log: str, turn: str) -> bool:
    """Whether the reply to turn shows a first piece in log."""
    _, _, after = log.rpartition(f"You: {turn}")
    return bool(after.partition("Robin: ")[2].strip())


def run(toolkit, model_path):
    import chat_app

    seen = {"status": []}
    if toolkit == "tk":
        import tkinter as tk

        root = tk.Tk()
        view = TkView(chat_app.ChatWindow(root, model_path))
        actions = script(view, seen)

        def tick():
            seen["status"].append(view.status())
            if next(actions, "end") != "end":
                root.after(50, tick)

        root.after(50, tick)
        root.mainloop()
    else:
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication

        app = QApplication([])
        view = QtView(chat_app.ChatWindow(model_path))
        view.window.show()
        actions, timer = script(view, seen), QTimer()

        def tick():
            seen["status"].append(view.status())
            if next(actions, "end") == "end":
                timer.stop()

        timer.timeout.connect(tick)
        timer.start(50)
        app.exec()
    closed = time.monotonic()
    view.window.worker.join()
    seen["worker_ended_s"] = time.monotonic() - closed
    return seen


if __name__ == "__main__":
    sys.path.insert(0, ".")
    import pyg_edge

    pyg_edge.cpu.prepare()
    slow_steps(float(sys.argv[3]))
    print(json.dumps(run(sys.argv[1], None if sys.argv[2] == "-" else sys.argv[2])))
