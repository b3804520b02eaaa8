"""Convert a peer's released zero-shot checkpoint into a ddjax run folder (Table 2's baseline
columns).

  python main.py --config=configs/convert.py --config.model=recon --config.source=zeroshot.pth \
      --workdir=RUN_DIR
  python main.py --config=configs/convert.py --config.model=ulip_pointbert \
      --config.source=checkpoint_pointbert.pt --workdir=RUN_DIR

model: recon (ReCon's PointTransformerZeroShot; class features from CLIP ViT-B/32, the default
teacher) or ulip_pointbert (ULIP-1's Point-BERT and pc_projection; no teacher: the jobs need
--config.text_features). source: .pth/.pt as released, .safetensors or .npz with the same keys (read
without executing the file). The jobs then take --config.checkpoint=RUN_DIR. See the README's
"Baselines" section.
"""

import ml_collections


def get_config(arg=None):
    del arg
    config = ml_collections.ConfigDict()
    config.job = "convert"
    config.model = "recon"  # recon | ulip_pointbert
    config.source = ""  # the checkpoint file
    # default: recon -> openai/clip-vit-base-patch32, ulip_pointbert -> none ("")
    config.teacher = "default"
    config.num_heads = 6  # not visible in the weights
    config.num_groups = 0  # 0: the model's own (ReCon 64, ULIP 512)
    config.group_size = 0  # 0: the model's own (32)
    return config
