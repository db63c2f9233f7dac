"""Write an XC train file keeping every n-th sample (a fixed random choice), the test file as is."""
import sys, random, shutil, os
src, dst, frac = sys.argv[1], sys.argv[2], float(sys.argv[3])
os.makedirs(dst, exist_ok=True)
lines = open(os.path.join(src, 'train.txt')).read().splitlines()
n, f, l = lines[0].split()
rows = lines[1:]
random.Random(0).shuffle(rows)
keep = rows[: int(len(rows) * frac)]
with open(os.path.join(dst, 'train.txt'), 'w') as out:
    out.write(f"{len(keep)} {f} {l}\n")
    out.write("\n".join(keep) + "\n")
shutil.copy(os.path.join(src, 'test.txt'), os.path.join(dst, 'test.txt'))
