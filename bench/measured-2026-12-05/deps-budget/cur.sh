python curriculum.py runs/cur-1024 1024 1024 0
python curriculum.py runs/cur-256-1024-h 256 1024 0.5
python curriculum.py runs/cur-256-640-h 256 640 0.5
