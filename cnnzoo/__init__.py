"""The ground floor of cnn-zoo: plumbing shared by `zoo`, `tuning` and `serving`.

Nothing here knows about CNNs, searches or TF Serving, and importing any module of it costs no
TensorFlow. Each concern has one module:

- `cnnzoo.env`: the process environment TensorFlow starts in (backend, quiet logs, threads);
- `cnnzoo.files`: atomic file writes (temporary file, then rename);
- `cnnzoo.cli`: the argument parser every command-line tool uses, and its exit codes;
- `cnnzoo.signals`: holding Ctrl-C while state is written;
- `cnnzoo.net`: loopback ports.
"""
__version__ = "0.1.0"
