"""Validate yuqing_news*.jsonl: schema, duplicates (exact/normalised/near), counts.

Usage: python models/finetune/data/check_data.py [--markdown]
"""
import collections
import itertools
import json
import os
import re
import sys

D=os.path.dirname(os.path.abspath(__file__))+os.sep
FILES=['yuqing_news.jsonl','yuqing_news_heldout.jsonl']
LABELS={'negative','neutral','positive'}; KINDS={'news_sentence','headline','investor_post'}
EVENTS={"earnings","guidance","mna","contracts","layoffs","ratings","litigation","macro","products","management","dividends","markets"}
def norm(t): return re.sub(r'[\W\d_]+',' ',t.lower()).strip()
data={}; ok=True
for f in FILES:
    rows=[]
    for i,line in enumerate(open(D+f,encoding='utf-8'),1):
        r=json.loads(line)
        assert set(r)=={'text','label','source_kind','event'}, (f,i)
        assert isinstance(r['text'],str) and r['text'].strip()==r['text'] and r['text'], (f,i)
        assert r['label'] in LABELS and r['source_kind'] in KINDS and r['event'] in EVENTS, (f,i,r)
        rows.append(r)
    data[f]=rows
allrows=[(f,r) for f in FILES for r in data[f]]
for key,name in [(lambda t:t,'exact'),(lambda t:t.lower().strip(),'casefold'),(norm,'normalised (no digits/punct)')]:
    c=collections.Counter(key(r['text']) for _,r in allrows)
    d=[k for k,v in c.items() if v>1]
    print(f'duplicates ({name}):',len(d)); ok&=not d
# near duplicates: token Jaccard >= 0.7
toks=[(f,set(norm(r['text']).split()),r['text']) for f,r in allrows]
nd=0
for (f1,a,t1),(f2,b,t2) in itertools.combinations(toks,2):
    if len(a)>=4 and len(b)>=4 and len(a&b)/len(a|b)>=0.7:
        nd+=1; print('NEAR-DUP:',f1,t1,'||',f2,t2)
print('near-duplicate pairs (token Jaccard>=0.7):',nd)
for f in FILES:
    rows=data[f]; print(f'\n{f}: {len(rows)} rows; Chinese-language rows:',sum(any('\u4e00'<=ch<='\u9fff' for ch in r['text']) for r in rows))
    for k in ['label','source_kind','event']:
        print(' ',k,dict(sorted(collections.Counter(r[k] for r in rows).items())))
if '--markdown' in sys.argv:
    for k in ['label','source_kind','event']:
        keys=sorted(set(r[k] for f in FILES for r in data[f]))
        print(f'\n| {k} | ' + ' | '.join(FILES) + ' |'); print('|---|' + '---:|'*len(FILES))
        for v in keys: print(f'| {v} | ' + ' | '.join(str(sum(r[k]==v for r in data[f])) for f in FILES) + ' |')
        print('| **total** | ' + ' | '.join(str(len(data[f])) for f in FILES) + ' |')
print('\nOK' if ok and nd==0 else '\nPROBLEMS'); sys.exit(0 if ok and nd==0 else 1)
