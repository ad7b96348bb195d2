"""`overlayd doctor`: what is wrong with this node's overlay, with evidence and a fix.

facts.py holds what was gathered (plain data); gather.py and probe.py gather it (the only side
effects); checks_*.py turn facts into findings (pure); core.diagnose runs every check; report.py
renders the result. See docs/operations.md.
"""
