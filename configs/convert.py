"""Convert a peer's released zero-shot checkpoint into a ddjax run folder (Table 2's baseline
columns).

  python main.py --config=configs/convert.py --config.model=recon --config.source=zeroshot.pth \
      --workdir=RUN_DIR
  python main.py --config=configs/convert.py --config.model=ulip2_pointbert \
      --config.source=ULIP-2-PointBERT-10k-xyzrgb-pc-vit_g-objaverse_shapenet-pretrained.pt \
      --config.text_features=ulip2_modelnet40.npy --workdir=RUN_DIR
  python main.py --config=configs/convert.py --config.model=uni3d_large --config.source=model.pt \
      --config.text_features=uni3d_modelnet40.npy --workdir=RUN_DIR

model: recon (ReCon's PointTransformerZeroShot; class features from CLIP ViT-B/32, the default
teacher), ulip_pointbert (ULIP-1's Point-BERT and pc_projection), ulip2_pointbert (ULIP-2's
coloured Point-BERT, 10,000 xyz+rgb points), uni3d_<size> (Uni3D's point encoder; size tiny, small,
base, large or giant). source: .pth/.pt as released, .safetensors or .npz with the same keys (read
without executing the file). text_features: FILE.npy[,FILE2.npy] (f32[classes, width], the class
names in FILE.txt beside it), made once with the peer's own text encoder, which ddjax does not port
(ULIP's SLIP, ULIP-2's OpenCLIP ViT-bigG-14, Uni3D's EVA02-E-14-plus): copied into the run folder,
where the jobs find the file of their dataset's classes. The jobs then take
--config.checkpoint=RUN_DIR. See docs/baselines.md.
"""

import ml_collections


def get_config(arg=None):
    del arg
    config = ml_collections.ConfigDict()
    config.job = "convert"
    config.model = "recon"  # recon | ulip_pointbert | ulip2_pointbert | uni3d_<size>
    config.source = ""  # the checkpoint file
    # default: recon -> openai/clip-vit-base-patch32, the others -> none ("")
    config.teacher = "default"
    config.num_heads = 6  # not visible in the weights (Uni3D: its size's)
    config.num_groups = 0  # 0: the model's own (ReCon 64, the others 512)
    config.group_size = 0  # 0: the model's own (32; Uni3D 64)
    config.npoints = 0  # 0: the model's own points per cloud (ULIP 8192, ULIP-2 and Uni3D 10,000)
    config.text_features = ""  # FILE.npy[,FILE2.npy]: class text features for the run folder
    return config
