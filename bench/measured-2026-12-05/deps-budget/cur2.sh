python curriculum.py runs/cur-1024-256-h 1024 256 0.5
python curriculum.py runs/cur-640-256-h 640 256 0.5
