"""Compare roofsim's burst GEMM model with XLA's sm_90 / sm_100 matmul table (bf16):
run from the repository root with the project installed; prints the 40 largest shapes.
Written 2026-12-07 after the table was extracted (the rows are not validation rows)."""
import csv
from sim.studies.validate import _predict_gemm
rows=list(csv.DictReader(open('benchmarks/research/xla-matmul-table-sm100-2026-12-07.csv')))
chipof={'sm_100':'b200','sm_90':'h100-sxm'}
d={}
for r in rows:
  if r['dtype'].lower()!='bf16xbf16->bf16': continue
  b,m,n,k=(int(r[x]) for x in 'bmnk')
  row=dict(id='x',chip=chipof[r['sm']],chips=1,dtype='bf16',m=m,n=n,k=k,groups=b,out_bytes=2)
  pred,det=_predict_gemm(row)
  d[(r['sm'],b,m,n,k)]=(float(r['flops_per_s'])/1e12,pred,det)
keys=sorted({k[1:] for k in d}, key=lambda x:-x[0]*x[1]*x[2]*x[3])
print(f"{'b':>2} {'m':>5} {'n':>5} {'k':>5} | H100 meas pred err | B200 meas pred err | B200/H100 meas")
for key in keys[:40]:
  h=d[('sm_90',)+key]; bb=d[('sm_100',)+key]
  print(f"{key[0]:2d} {key[1]:5d} {key[2]:5d} {key[3]:5d} | {h[0]:6.0f} {h[1]:6.0f} {100*(h[1]/h[0]-1):+5.0f} | {bb[0]:6.0f} {bb[1]:6.0f} {100*(bb[1]/bb[0]-1):+5.0f} | {bb[0]/h[0]:.2f} pred {bb[1]/h[1]:.2f}")
