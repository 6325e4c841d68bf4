# TEMPORARY SHIM
import re
U={"s":1,"sec":1,"min":60,"m":60,"h":3600,"hour":3600,"ms":0.001}
def parse(s):
    return sum(float(n)*U[u] for n,u in re.findall(r"(\d+)\s*([a-z]+)", s))
