#!/usr/bin/env python3
"""Password logins against a release server (issue 28's figures).

Starts target/release/selectchat on a free loopback port with an in-memory
database, registers N accounts (REGISTER, 64 connections at a time), then
measures:
  - LOGIN with a password -> OK at a paced 20 logins/s (100 logins): p50/p99
    and the server's CPU per login (/proc/PID/stat);
  - a storm of N logins at once: time until all are OK, p50/p99, retries
    (answers auth-busy or too-many-attempts, retried after 100-200 ms);
  - another user's PING -> PONG, idle and during the storm, from this
    process and from a process of its own (benches/pinger.py).
Usage: cargo build --release && python3 benches/logins.py [N=2000]
"""
import asyncio, time, socket, subprocess, sys, random, statistics
import os
ROOT=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN=os.path.join(ROOT,"target/release/selectchat")
PINGER=os.path.join(ROOT,"benches/pinger.py")
N=int(sys.argv[1]) if len(sys.argv)>1 else 2000
def free_port():
    s=socket.socket(); s.bind(("127.0.0.1",0)); p=s.getsockname()[1]; s.close(); return p
def cpu(pid):
    f=open(f"/proc/{pid}/stat").read().rsplit(")",1)[1].split()
    return (int(f[11])+int(f[12]))/100.0
def pct(v,q): v=sorted(v); return v[min(len(v)-1,int(q*len(v)))]
async def line(r):
    while True:
        l=(await r.readline()).decode().rstrip("\n")
        if l!="PING": return l
async def register(port,i,sem):
    async with sem:
        r,w=await asyncio.open_connection("127.0.0.1",port)
        while True:
            w.write(f"REGISTER u{i} password-{i}\n".encode()); await w.drain()
            l=await line(r)
            if l=="OK": break
            await asyncio.sleep(0.05)
        await line(r)  # END UNREAD
        w.close()
async def login(port,i,lat,retries):
    r,w=await asyncio.open_connection("127.0.0.1",port)
    t=time.perf_counter()
    while True:
        w.write(f"LOGIN u{i} password-{i}\n".encode()); await w.drain()
        l=await line(r)
        if l=="OK": break
        if l in ("ERR auth-busy","ERR too-many-attempts"):
            retries[0]+=1; await asyncio.sleep(0.1+random.random()*0.1); continue
        raise Exception(l)
    await line(r)
    lat.append(time.perf_counter()-t)
    return r,w
async def pinger(port,stop,rtts):
    r,w=await asyncio.open_connection("127.0.0.1",port)
    w.write(b"LOGIN watcher\n"); await w.drain(); await line(r)
    while not stop.is_set():
        t=time.perf_counter(); w.write(b"PING x\n"); await w.drain()
        while (await line(r))!="PONG x": pass
        rtts.append(time.perf_counter()-t); await asyncio.sleep(0.01)
async def main():
    port=free_port()
    proc=subprocess.Popen([BIN,str(port),"--db",":memory:","--rate","0","--max-per-ip","0","--max-clients","5000","--registrations-per-hour","0","--log-level","warn"])
    await asyncio.sleep(0.5)
    sem=asyncio.Semaphore(64)
    t=time.time(); await asyncio.gather(*(register(port,i,sem) for i in range(N)))
    print(f"registered {N} in {time.time()-t:.1f} s")
    # idle pings
    stop=asyncio.Event(); idle=[]; task=asyncio.create_task(pinger(port,stop,idle)); await asyncio.sleep(2); stop.set(); await task
    # paced logins at 20/s
    lat=[]; retries=[0]; c0=cpu(proc.pid); conns=[]
    t0=time.perf_counter()
    for k in range(100):
        conns.append(asyncio.create_task(login(port,k,lat,retries)))
        await asyncio.sleep(max(0,t0+(k+1)/20-time.perf_counter()))
    res=await asyncio.gather(*conns); c1=cpu(proc.pid)
    for r,w in res: w.close()
    print(f"paced 20/s x100: LOGIN->OK p50 {pct(lat,.5)*1000:.1f} ms p99 {pct(lat,.99)*1000:.1f} ms, server CPU per login {(c1-c0)/100*1000:.1f} ms, retries {retries[0]}")
    # storm, with another user pinging from a process of its own
    idle_p=subprocess.run(["python3",PINGER,str(port),"3"],capture_output=True,text=True).stdout.strip()
    pp=subprocess.Popen(["python3",PINGER,str(port),"25"],stdout=subprocess.PIPE,text=True)
    await asyncio.sleep(0.3)
    stop=asyncio.Event(); during=[]; task=asyncio.create_task(pinger(port,stop,during))
    lat=[]; retries=[0]; c0=cpu(proc.pid); t=time.perf_counter()
    res=await asyncio.gather(*(login(port,k,lat,retries) for k in range(N)))
    el=time.perf_counter()-t; c1=cpu(proc.pid); stop.set(); await task
    print(f"storm {N}: all OK in {el:.1f} s, LOGIN->OK p50 {pct(lat,.5):.2f} s p99 {pct(lat,.99):.2f} s, auth-busy/too-many retries {retries[0]}, server CPU {c1-c0:.1f} s ({(c1-c0)/N*1000:.1f} ms per login)")
    print(f"another user's PING->PONG: idle p50 {pct(idle,.5)*1000:.2f} ms p99 {pct(idle,.99)*1000:.2f} ms; during the storm p50 {pct(during,.5)*1000:.2f} ms p99 {pct(during,.99)*1000:.2f} ms ({len(during)} pings)")
    print("another user in its own process: idle", idle_p, "; during the storm", pp.communicate()[0].strip())
    proc.terminate(); proc.wait()
asyncio.run(main())
