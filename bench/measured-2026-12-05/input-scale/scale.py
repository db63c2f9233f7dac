import sys
src, dst, s = sys.argv[1], sys.argv[2], float(sys.argv[3])
with open(src) as f, open(dst, "w") as out:
    out.write(f.readline())
    for line in f:
        parts = line.rstrip("\n").split(" ")
        feats = [parts[0]] if ":" not in parts[0] else []
        rest = parts[1:] if feats else parts
        for p in rest:
            if ":" in p:
                k, v = p.split(":"); feats.append(f"{k}:{float(v)*s:.6g}")
        out.write(" ".join(feats) + "\n")
