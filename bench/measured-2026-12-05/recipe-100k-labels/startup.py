import time, sys
t0 = time.perf_counter()
from slidepy.cli import main
sys.argv = ['slidepy', 'train', '--train', '/work/exp/s17/syn100k-train.txt', '--test', '/work/exp/s17/syn100k-test.txt',
            '--out', '/work/exp/s17/syn100k-startup', '--overwrite', '--no-progress', '--set', 'training.max_steps=1', '--set', 'eval.every=0']
import cProfile, pstats
cProfile.run('try:\n    main()\nexcept SystemExit:\n    pass', '/work/exp/s17/startup.prof')
print('total', time.perf_counter() - t0)
p = pstats.Stats('/work/exp/s17/startup.prof'); p.sort_stats('cumulative').print_stats(35)
