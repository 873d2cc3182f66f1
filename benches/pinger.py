#!/usr/bin/env python3
"""One user pinging a server for SECS seconds: PING -> PONG p50/p99.
Usage: python3 benches/pinger.py PORT SECS (benches/logins.py runs it)."""
import socket, time, sys
port=int(sys.argv[1]); dur=float(sys.argv[2])
c=socket.create_connection(("127.0.0.1",port)); f=c.makefile("rb")
c.sendall(b"LOGIN watcher%d\n" % int(time.time()*1000%100000)); f.readline()
rtts=[]; end=time.time()+dur
while time.time()<end:
    t=time.perf_counter(); c.sendall(b"PING x\n")
    while f.readline()!=b"PONG x\n": pass
    rtts.append(time.perf_counter()-t); time.sleep(0.01)
rtts.sort(); print(f"p50 {rtts[len(rtts)//2]*1000:.2f} ms p99 {rtts[int(len(rtts)*.99)]*1000:.2f} ms ({len(rtts)} pings)")
