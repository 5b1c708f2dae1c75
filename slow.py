import socket, time, threading, httpx, json, sys
H=("127.0.0.1",18321)
def conn(src="127.0.0.1"):
    s=socket.socket(); s.bind((src,0)); s.connect(H); return s
def wait_close(s, t0, label):
    s.settimeout(60)
    try:
        d=s.recv(4096)
        print(f"{label}: after {time.time()-t0:.1f}s got {d[:120]!r}")
    except Exception as e: print(label, "exc", e, time.time()-t0)
body=json.dumps([{"id":"s","features":{"amount":1,"country":"x"},"prediction":1}]).encode()
hdr=lambda n: (f"POST /v1/models/good-model/predictions HTTP/1.1\r\nHost: 127.0.0.1:18321\r\nContent-Type: application/json\r\nContent-Length: {n}\r\n\r\n").encode()
test=sys.argv[1]
if test=="halfhdr":
    s=conn(); t0=time.time(); s.send(b"POST /v1/models/good-model/predictions HTTP/1.1\r\nHost: 127.0.0.1\r\n"); wait_close(s,t0,"half headers")
if test=="trickle":
    s=conn(); t0=time.time(); data=hdr(len(body))
    def tr():
        for b in data:
            try: s.send(bytes([b])); time.sleep(0.5)
            except Exception: return
    threading.Thread(target=tr,daemon=True).start(); wait_close(s,t0,"trickled headers")
if test=="slowbody":
    s=conn(); t0=time.time(); s.send(hdr(len(body))+body[:5]); wait_close(s,t0,"slow body")
if test=="many_slow":
    socks=[]
    for i in range(8):
        s=conn(f"127.0.0.{i+2}"); s.send(hdr(len(body))+body[:5]); socks.append(s)
    time.sleep(0.5)
    ok=0
    for i in range(20):
        r=httpx.post("http://127.0.0.1:18321/v1/models/good-model/predictions",content=body,headers={"content-type":"application/json"}); ok+= r.status_code==202
    print("normal client served", ok, "of 20 beside 8 slow")
if test=="perclient":
    socks=[]
    for i in range(6):
        s=conn("127.0.0.50"); s.send(hdr(len(body))+body[:5]); socks.append(s)
    time.sleep(0.3)
    for i,s in enumerate(socks):
        s.settimeout(0.5)
        try: print(i, s.recv(300)[:100])
        except Exception as e: print(i, "no answer yet")
    # same address normal request
    s=conn("127.0.0.50"); s.send(hdr(len(body))+body); s.settimeout(2); print("7th full:", s.recv(300)[:60])
if test=="hangup":
    for i in range(5):
        s=conn(); s.send(hdr(len(body))+body[:5]); time.sleep(0.2); s.close()
    print("5 hangups done")
if test=="manyconn":
    socks=[]
    for i in range(80):
        try: socks.append(conn(f"127.0.0.{100+i%50}"))
        except Exception as e: print("connect fail", i, e)
    time.sleep(0.5)
    try:
        r=httpx.post("http://127.0.0.1:18321/v1/models/good-model/predictions",content=body,headers={"content-type":"application/json"}, timeout=5); print("normal after 80 idle:", r.status_code)
    except Exception as e: print("normal after 80 idle: FAIL", repr(e))
    # attacker keeps reconnecting
    stop=time.time()+12; served=fail=0
    def keep():
        while time.time()<stop:
            for i,s in enumerate(socks):
                s.setblocking(False)
                try:
                    d=s.recv(10)
                    if d==b"":
                        raise ConnectionError
                except BlockingIOError: continue
                except Exception:
                    try: socks[i]=conn(f"127.0.0.{100+i%50}")
                    except Exception: pass
            time.sleep(0.05)
    t=threading.Thread(target=keep); t.start()
    while time.time()<stop:
        try:
            r=httpx.post("http://127.0.0.1:18321/v1/models/good-model/predictions",content=body,headers={"content-type":"application/json"}, timeout=5); served+= r.status_code==202
        except Exception: fail+=1
        time.sleep(0.2)
    t.join(); print("with reconnecting attacker: served", served, "failed", fail)
