# Load N unique keys (text protocol, pipelined batches) into a node.
import socket, sys, time
port = int(sys.argv[1]); n = int(sys.argv[2]); vsize = int(sys.argv[3]) if len(sys.argv) > 3 else 16
s = socket.create_connection(("127.0.0.1", port))
val = "v" * vsize
batch = 5000
t = time.time()
for start in range(0, n, batch):
    end = min(n, start + batch)
    s.sendall("".join(f"SET key:{i:08d} {val}\r\n" for i in range(start, end)).encode())
    want = (end - start) * 4
    got = 0
    while got < want:
        d = s.recv(1 << 20)
        if not d: raise SystemExit("closed")
        got += len(d)
print(f"loaded {n} keys in {time.time()-t:.2f}s")
