"""The AVS task: task.py (the Task), layout.py (official layout reader), prepare.py, model.py, synthetic.py (demo data)."""
