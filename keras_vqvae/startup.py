"""How the commands start: TensorFlow loaded with its start-up notices kept off the terminal, everything else shown.

As it loads, TensorFlow writes notices to stderr before its logging is set up, so that TF_CPP_MIN_LOG_LEVEL does not
reach them: that oneDNN is on and that no CUDA driver was found (each twice, once per library it loads), then, at the
first look at the devices of a machine without a CUDA driver, an error line saying "failed call to cuInit". Under
`python -m keras_vqvae...` the package loads TensorFlow through `load_tensorflow_quietly()`, which captures stderr's
file descriptor meanwhile and writes back every line but those: a real warning or error still shows. Set
`TF_CPP_MIN_LOG_LEVEL=0` to see everything TensorFlow prints. Importing keras_vqvae as a library changes nothing.
"""

from __future__ import annotations

import os
import sys
import tempfile

NO_DRIVER = "Could not find cuda drivers on your machine"
NOTICES = ("All log messages before absl::InitializeLog() is called are written to STDERR",
           "oneDNN custom operations are on", NO_DRIVER)
NO_DRIVER_ERROR = "failed call to cuInit"  # a notice only beside NO_DRIVER; with a driver, a real error


def launched_as_command() -> bool:
    """Whether Python is locating `python -m keras_vqvae` or `python -m keras_vqvae.<command>` (runpy sets argv[0]
    to "-m" while it imports the packages above the module)."""
    if sys.argv[:1] != ["-m"] or "-m" not in sys.orig_argv[:-1]:
        return False
    module = sys.orig_argv[sys.orig_argv.index("-m") + 1]
    return module == "keras_vqvae" or module.startswith("keras_vqvae.")


def without_notices(text: str) -> str:
    """`text` (what TensorFlow wrote to stderr while loading) without its start-up notices."""
    lines = text.splitlines(keepends=True)
    notices = NOTICES + ((NO_DRIVER_ERROR,) if any(NO_DRIVER in line for line in lines) else ())
    return "".join(line for line in lines if not any(notice in line for notice in notices))


def load_tensorflow_quietly() -> None:
    """Imports TensorFlow and looks at the devices with stderr captured, then writes back what `without_notices`
    keeps. TensorFlow's C++ log level defaults to 2 (errors shown, information and warnings not); a level of 0
    shows everything, the notices too."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    terminal = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # where cuInit fails; physical devices only, so the runtime stays unset
        finally:
            sys.stderr.flush()
            os.dup2(terminal, 2)
            os.close(terminal)
            captured.seek(0)
            sys.stderr.write(without_notices(captured.read().decode(errors="replace")))
            sys.stderr.flush()
