"""Writes tests/data/authors_checkpoint_keys.json.gz: key names and shapes (values irrelevant) of the checkpoints
the STMask authors' code (MinghanLi/STMask at b8ca9ef; COCO and R50 "interval 3" variants as of April 2021) and
dbolya/yolact save, derived from the structure of their model definitions (module names, registration order, DCN
placement rule: block 0 always, block i >= 1 when i % interval == 0 in stages res3-res5).

    python tests/data/make_authors_checkpoint_keys.py tests/data/authors_checkpoint_keys.json.gz [LISTING_DIR]

With LISTING_DIR (a folder of <name>.keys.txt listings of real checkpoints, "name<TAB>[shape]..." lines), the
generated STMask_plus_resnet50_{ada,ali} listings are checked against them.
"""
import gzip
import json
import os
import sys

def bn(p, c):
    return [(p+".weight",[c]),(p+".bias",[c]),(p+".running_mean",[c]),(p+".running_var",[c]),(p+".num_batches_tracked",[])]

def backbone(depth, dcn_interval, dcn_all_stages=True):
    blocks = {50:[3,4,6,3],101:[3,4,23,3]}[depth]
    dcn_layers = [0]+blocks[1:]
    out = [("backbone.conv1.weight",[64,3,7,7])] + bn("backbone.bn1",64)
    inplanes = 64
    for s,(planes,n) in enumerate(zip([64,128,256,512],blocks)):
        for b in range(n):
            p=f"backbone.layers.{s}.{b}"
            use_dcn = (dcn_layers[s] >= n) if b == 0 else ((b + dcn_layers[s]) >= n and b % dcn_interval == 0)
            out.append((p+".conv1.weight",[planes,inplanes,1,1])); out += bn(p+".bn1",planes)
            out.append((p+".conv2.weight",[planes,planes,3,3]))
            if use_dcn:
                out += [(p+".conv2.bias",[planes]),(p+".conv2.conv_offset_mask.weight",[27,planes,3,3]),(p+".conv2.conv_offset_mask.bias",[27])]
            out += bn(p+".bn2",planes)
            out.append((p+".conv3.weight",[planes*4,planes,1,1])); out += bn(p+".bn3",planes*4)
            if b == 0:
                out.append((p+".downsample.0.weight",[planes*4,inplanes,1,1])); out += bn(p+".downsample.1",planes*4)
            inplanes = planes*4
    return out

def conv(p, o, i, kh, kw, bias=True):
    return [(p+".weight",[o,i,kh,kw])] + ([(p+".bias",[o])] if bias else [])

def fpn_proto():
    out=[]
    out += conv("proto_net.0",256,256,3,3)+conv("proto_net.2",256,256,3,3)+conv("proto_net.4",256,256,3,3)+conv("proto_net.8",256,256,3,3)+conv("proto_net.10",32,256,1,1)
    for i,c in enumerate([2048,1024,512]): out += conv(f"fpn.lat_layers.{i}",256,c,1,1)
    for i in range(3): out += conv(f"fpn.pred_layers.{i}",256,256,3,3)
    for i in range(2): out += conv(f"fpn.downsample_layers.{i}",256,256,3,3)
    return out

K=[(3,3),(3,5),(5,3)]
def stmask_head(ncls, fcb, tf, track=True):
    h="prediction_layers.0."
    out = conv(h+"upfeature.0",256,256,3,3)
    for k,(kh,kw) in enumerate(K): out += conv(h+f"bbox_layer.{k}",4,256,kh,kw)
    if track:
        for k,(kh,kw) in enumerate(K): out += conv(h+f"track_layer.{k}",128,256,kh,kw)
    for k,(kh,kw) in enumerate(K): out += conv(h+f"mask_layer.{k}",32,256,kh,kw)
    for k,(kh,kw) in enumerate(K): out += conv(h+f"centerness_layer.{k}",1,256,kh,kw)
    for k,(kh,kw) in enumerate(K):
        if fcb == "none":
            out += conv(h+f"conf_layer.{k}",ncls,256,kh,kw)
        else:
            if fcb == "ada": out += conv(h+f"conf_layer.{k}.conv_offset",2*kh*kw,4,1,1,bias=False)
            out += conv(h+f"conf_layer.{k}.conv_adaption",256,256,kh,kw,bias=False)
            out += conv(h+f"conf_layer.{k}.conv",ncls,256,kh,kw)
    for t in (["track"] if track else [])+["conf","bbox","mask"]:
        out += conv(h+f"{t}_extra.0",256,256,3,3)+conv(h+f"{t}_extra.2",256,256,3,3)
    if tf:
        out += conv("TemporalNet.conv1",512,633,3,3)+conv("TemporalNet.conv2",512,512,3,3)+conv("TemporalNet.conv3",1024,512,3,3)
        out += [("TemporalNet.fc.weight",[4,1024]),("TemporalNet.fc.bias",[4]),("TemporalNet.fc_coeff.weight",[32,1024]),("TemporalNet.fc_coeff.bias",[32])]
    return out

def yolactpp_head():
    h="prediction_layers.0."
    out = conv(h+"upfeature.0",256,256,3,3)+conv(h+"bbox_layer",36,256,3,3)+conv(h+"conf_layer",729,256,3,3)+conv(h+"mask_layer",288,256,3,3)
    out += conv("semantic_seg_conv",80,256,1,1)
    chans=[1,8,16,32,64,128]
    for i in range(5): out += conv(f"maskiou_net.{2*i}",chans[i+1],chans[i],3,3)
    out += conv("maskiou_net.10",80,128,1,1)
    return out

V = {
 "STMask_plus_resnet50_ada": backbone(50,2)+fpn_proto()+stmask_head(41,"ada",True),
 "STMask_plus_resnet50_ali": backbone(50,2)+fpn_proto()+stmask_head(41,"ali",True),
 "STMask_plus_resnet50": backbone(50,2)+fpn_proto()+stmask_head(41,"none",True),
 "STMask_plus_base_ada_OVIS": backbone(101,3)+fpn_proto()+stmask_head(26,"ada",True),
 "yolact_plus_resnet50_ali_54": backbone(50,3)+fpn_proto()+stmask_head(81,"ali",False),
 "STMask_plus_resnet50_ada_dcn_interval3": backbone(50,3)+fpn_proto()+stmask_head(41,"ada",True),
 "yolact_plus_resnet50_54_800000": backbone(50,1)+fpn_proto()+yolactpp_head(),
 "yolact_plus_base_54_800000": backbone(101,3)+fpn_proto()+yolactpp_head(),
}
# check against the shared listings (as sets of (key, shape))
def shared(path):
    d={}
    for line in open(path):
        if line.startswith("#") or not line.strip() or "\t" not in line: continue
        parts=line.rstrip("\n").split("\t")
        d[parts[0]] = json.loads(parts[1])
    return d
for name in ("STMask_plus_resnet50_ada", "STMask_plus_resnet50_ali") if len(sys.argv) > 2 else ():
    s = shared(os.path.join(sys.argv[2], f"{name}.keys.txt"))
    g = dict(V[name])
    assert len(g)==len(V[name])
    assert s == g, (name, set(s)^set(g), [k for k in s if k in g and s[k]!=g[k]][:5])
    print(name, "matches the shared listing:", len(s), "keys")
json.dump({k:[[n,s] for n,s in v] for k,v in V.items()}, gzip.open(sys.argv[1],"wt"), separators=(",",":"))
for k,v in V.items(): print(k, len(v))
