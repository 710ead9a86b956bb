"""Hung-yi Lee's worked LSTM example: one unit whose gates read, write and erase a memory of 7.

Run: python examples/worked_lstm.py
"""

from rnnkit.demo import LEE_MEMORY, LEE_OUTPUT, format_table, lee_table

rows = lee_table()
print(format_table(rows))
assert [round(r["c"]) for r in rows] == LEE_MEMORY, "memory should be 3, 7, 7, 7, 0"
assert [round(r["y"]) for r in rows] == LEE_OUTPUT, "output should be 0, 0, 0, 7, 0"
print("matches the lecture: memory 3, 7, 7, 7, 0 and output 0, 0, 0, 7, 0")
