"""Guest-side supervisor of one docker job (run as ``python -I -c <this file> WORKDIR CAP PYTHON``).

The host passes this text with -c, so the guest cannot alter it. It makes the job's private
work dir, starts the runner with the attached stdin/stdout (job line in, result frame out)
and its stderr on a pipe, forwards at most CAP bytes of that pipe and drops the rest INSIDE
the container (a gigabyte of prints would otherwise crawl through dockerd), then exits with
the runner's status (128+N for a signal, as a shell would report it).
"""
import os
import sys
import threading

wd, cap, py = sys.argv[1], int(sys.argv[2]), sys.argv[3]
os.mkdir(wd, 0o700)
os.mkdir(wd + "/tmp", 0o700)
os.chdir(wd)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    os.dup2(w, 2)
    os.close(w)
    try:
        os.execvp(py, [py, "-I", "/agentopt/runner.py"])
    finally:
        os._exit(127)
os.close(w)
os.close(0)
counts = [0, 0]
def pump():
    while True:
        try:
            data = os.read(r, 1 << 16)
        except OSError:
            return
        if not data:
            return
        room = max(0, cap - counts[0])
        if room:
            view = memoryview(data[:room])
            while view:
                try:
                    view = view[os.write(2, view):]
                except OSError:
                    break
        counts[0] += min(room, len(data))
        counts[1] += len(data) - min(room, len(data))
t = threading.Thread(target=pump, daemon=True)
t.start()
while True:
    try:
        _, status = os.waitpid(pid, 0)
        break
    except ChildProcessError:
        status = 0
        break
    except InterruptedError:
        pass
t.join(0.5)  # leftovers of the job may hold the pipe: do not wait for them
if counts[1]:
    os.write(2, b"\n[... %d more bytes of output discarded]" % counts[1])
os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
