"""Every setting of a run, as plain commented globals.

Edit this file, or override any value from the command line:
    python main.py --dataset=bikenyc --nb_residual_unit=2 --lr=0.0001
A value of None means "the default of the chosen data set", taken from DATASET_DEFAULTS below
(the paper's settings for TaxiBJ and BikeNYC). main.py and settings.py read this module (and
summarize.py its defaults, to compare runs); everything else takes arguments.
"""

# ---- preset -----------------------------------------------------------------------------------
preset = "auto"            # auto: paper for the named data sets (bikenyc, taxibj, synthetic), fast
                           # for your own files (flow files, converted trips, LibCity grids) |
                           # paper: every setting below as it stands (the paper's protocol) |
                           # fast: PRESETS["fast"] on top, the paper's model with stage 1's
                           # patience 15, bfloat16 where native and a stage 2 of 30 cosine
                           # epochs, averaged | improved: PRESETS["improved"]
                           # on top (RESULTS.md). Keys given on the command line win over a preset.

# ---- data -------------------------------------------------------------------------------------
dataset = "synthetic"      # synthetic | bikenyc | taxibj (synthetic is built in, needs no download),
                           # or the path of your own HDF5 flow file(s) or LibCity .grid file(s),
                           # comma-separated (data/README.md)
data_dir = "data"          # holds BikeNYC/, TaxiBJ/ and Synthetic/ (see data/README.md)
slots_per_day = None       # T; a named data set has its own, a file's is its largest slot number
                           # (plus 1 where the slots are numbered from 00)
duplicates = "error"       # a time stamp given more than once (within a file or across files):
                           # error | first | last: keep that copy, in the order the files are given
empty_slots = "keep"       # a slot whose frame is all zeros city-wide: keep (as data; a warning
                           # names those between busy slots) | missing: treat it as absent, so its
                           # day is dropped like any incomplete day (recording gaps, e.g. TaxiNYC)
holiday_file = ""          # a holiday list (one YYYYMMDD a line) replacing the data set's own
meteorology_file = ""      # a meteorology file in the BJ_Meteorology.h5 format, likewise
len_closeness = None       # recent slots t-1 .. t-lc fed to the closeness branch (0 switches it off)
len_period = None          # same slot on the lp previous days (0 switches the period branch off)
len_trend = None           # same slot on the lq previous weeks (0 switches the trend branch off)
days_test = None           # the last days_test * T samples are the test set
tune_days = 0              # >0: a tuning run, for choosing settings without reading the test set:
                           # the test period's samples are left out (never built) and the last
                           # tune_days days before it are scored in their place (results table,
                           # baselines, metrics.json, plots); stage 2 also scores them after
                           # every epoch (its val_rmse), so that its length can be chosen on them
use_meta = True            # day-of-week one-hot + weekday flag of the target slot (8 features)
use_holiday = None         # holiday flag of the target date (needs a holiday list)
use_time_of_day = False    # one-hot of the target's slot within its day (T features), appended to
                           # the external vector; not in the paper (BikeNYC: RESULTS.md)
use_meteorology = None     # weather of slot t-1, wind speed, temperature (needs a meteorology file)

# ---- model ------------------------------------------------------------------------------------
nb_residual_unit = None    # L, residual units per branch (paper: 12 TaxiBJ, 4 BikeNYC)
nb_filters = None          # filters of every 3x3 convolution inside a branch (paper: 64)
batch_norm = False         # BatchNormalization before each ReLU of a residual unit (paper's "-BN")
output_activation = "tanh" # tanh (paper): the output squashed into the flows' [-1, 1] range, which
                           # a never-used region (flow 0 = -1) reaches only as its input goes to
                           # -infinity | linear: no squashing (a prediction can leave the range)
output_bias = None         # True: a learnable bias per cell and flow before the output activation,
                           # started at the cell's mean training target (atanh of it under tanh),
                           # so training starts from the data's level. Without it heavy-tailed
                           # flows (most cells near 0 = -1 on the scaled range, the tanh's
                           # asymptote) collapse to a constant prediction in the first 20 Adam
                           # steps (docs/own_city.md). Not in the paper: on for your own
                           # files, off for the paper's data sets

# ---- training (paper: Adam 2e-4, batch 32, MSE; stage 1 early stopping, stage 2 fixed epochs) ---
batch_size = 32
lr = 0.0002                # larger rates can collapse training to a constant prediction
epochs = None              # stage 1: maximum epochs on 90% of the training samples
patience = None            # stage 1: early stopping patience on the validation RMSE
validation_fraction = 0.1  # stage 1: the last 10% of the training samples validate
epochs_cont = None         # stage 2: epochs on the full training set after stage 1 (0 skips it)
loss = "mse"               # mse (paper) | mae | huber: quadratic up to huber_delta, linear beyond
huber_delta = 0.1          # the Huber loss's threshold on the [-1, 1] scale (0.1: about 13 BikeNYC
                           # flows); only with loss=huber
weight_decay = 0.0         # >0: AdamW's decoupled weight decay at this rate: each step shrinks
                           # every weight by lr x weight_decay (paper: 0, plain Adam)
warmup_epochs = 0.0        # >0: stage 1's rate rises linearly, step by step, from lr/n to lr over
                           # its first n = warmup_epochs x (steps per epoch) steps (paper: 0). Early
                           # Adam steps can push the output's tanh into saturation, where every
                           # gradient is 0 and training stays at a constant prediction for good
plateau_factor = 0.0       # >0: stage 1 does not end at its first plateau: when val_rmse has not
                           # improved for `patience` epochs, the best weights are restored and the
                           # rate multiplied by this (e.g. 0.5), at most plateau_cuts times; the
                           # next plateau after the last cut ends stage 1. 0: early stopping at a
                           # constant rate (paper). With patience 5 and 0.5: tuning RMSE level
                           # with fast's in 13-25% less time on three cities, but worse after
                           # stage 1 on dense ones (RESULTS.md, "Time per model"); not in fast
plateau_cuts = 2           # how many times plateau_factor may cut stage 1's rate
lr_cont = 0.0              # stage 2's starting learning rate; 0: the same as lr (paper)
lr_schedule = "constant"   # stage 2's rate: constant (paper) | cosine: falls from lr_cont to 0
                           # along a half cosine over the epochs_cont epochs
average_last = 0           # >0: the final weights are the mean of stage 2's last k epoch-end
                           # weights (stochastic weight averaging); 0: the last epoch's (paper)
ensemble = 1               # >1: train this many models in turn (seeds seed, seed+1, ...), each by
                           # the whole two-stage protocol, and predict with the mean of their
                           # outputs; model.keras holds them all as one model (paper: 1)
precision = "float32"      # float32 (paper) | mixed_bfloat16: compute in bfloat16, keep weights and
                           # the output in float32 (fast on CPUs with AVX-512 BF16/AMX and on GPUs)
                           # | auto: mixed_bfloat16 where the hardware computes bfloat16 natively
                           # (a GPU of compute capability >= 8.0, or a CPU with the amx_bf16 or
                           # avx512_bf16 flag), float32 elsewhere, where bfloat16 is emulated and slow
jit_compile = None         # compile the train step (TensorFlow: XLA, JAX: jax.jit, PyTorch:
                           # torch.compile); None: the backend's choice, off under TensorFlow
                           # (XLA measured slower on CPU) and PyTorch, on under JAX (its only
                           # fast path)
threads = 0                # >0: the framework's intra-op and inter-op thread pools get this many
                           # threads (e.g. 1 each for two trainings side by side on 2 cores;
                           # TensorFlow and PyTorch); 0: the framework's choice, every core
seed = 1337                # one seed for weight init, shuffling and the framework's ops
verbose = 2                # Keras fit verbosity: 0 silent, 1 progress bar, 2 one line per epoch

# ---- devices ------------------------------------------------------------------------------------
distribute = "none"        # none: one device | mirrored: all local GPUs (without GPUs, every
                           # logical CPU device; TensorFlow and JAX) | multiworker: several
                           # processes or machines, as set by the TF_CONFIG environment variable
                           # (TensorFlow only; docs/distributed.md). batch_size stays
                           # the global batch: each of n replicas computes 1/n of it, so lr,
                           # epochs and results mean what they mean on one

# ---- multi-step evaluation and forecasting -------------------------------------------------------
horizon = 1                # >1: also score 1..horizon steps ahead on the test period, feeding the
                           # model its own predictions (journal version); with forecast_from: steps
forecast_from = ""         # a run folder: forecast the slots after the data's last one with its
                           # model instead of training (python main.py --forecast_from=runs/...)
mape_threshold = 10.0      # MAPE (mean of |error| / true value; a fraction, 0.21 = 21%) is
                           # scored over the test values above this only, as TaxiNYC's
                           # published protocol does (> 10): metrics.json, the results table

# ---- output -----------------------------------------------------------------------------------
out_dir = "runs"           # each run writes a new folder out_dir/<dataset>-<time>; never overwrites
resume = ""                # a run folder: continue that killed or interrupted run from its last
                           # completed epoch; give the command that started it plus --resume=...

# The paper's settings per data set, used wherever a global above is None.
# slots_per_day: T. epochs: the official scripts' 500 for the real sets. The built-in synthetic set
# is a quick demonstration, not the paper's setting: a smaller network (2 units of 32 filters) and
# fewer epochs, so that `python main.py` ends in about 3 minutes on 2 CPU cores.
DATASET_DEFAULTS = {
    "taxibj": dict(slots_per_day=48, len_closeness=3, len_period=1, len_trend=1, days_test=28,
                   nb_residual_unit=12, nb_filters=64, epochs=500, patience=2, epochs_cont=100,
                   use_holiday=True, use_meteorology=True, output_bias=False),
    "bikenyc": dict(slots_per_day=24, len_closeness=3, len_period=4, len_trend=4, days_test=10,
                    nb_residual_unit=4, nb_filters=64, epochs=500, patience=5, epochs_cont=100,
                    use_holiday=False, use_meteorology=False, output_bias=False),
    "synthetic": dict(slots_per_day=24, len_closeness=3, len_period=4, len_trend=4, days_test=10,
                      nb_residual_unit=2, nb_filters=32, epochs=60, patience=5, epochs_cont=5,
                      use_holiday=True, use_meteorology=False, output_bias=False),
    # Your own flow files: the paper's protocol and TaxiBJ's window lengths; holiday and
    # meteorology features are used when their files are given. The output starts at the data's
    # mean: real cities' heavy-tailed flows collapse without it (RESULTS.md, "Other cities").
    "file": dict(slots_per_day=None, len_closeness=3, len_period=1, len_trend=1, days_test=7,
                 nb_residual_unit=4, nb_filters=64, epochs=500, patience=5, epochs_cont=100,
                 use_holiday=None, use_meteorology=None, output_bias=True),
}

# Named presets: settings laid over the ones above (and over DATASET_DEFAULTS).
PRESETS = {
    "paper": {},
    # The default for your own data: the paper's model, with three changes to its training, each
    # chosen on tuning runs (--tune_days: the test period left out, the days before it scored;
    # RESULTS.md, "Stage 2's length and schedule" and "Stage 1's patience and bfloat16"):
    # - stage 2 cut from the paper's 100 epochs at a constant rate to 30 epochs whose rate falls
    #   along a half cosine to 0, the final weights the mean of the last 10 epochs' (stochastic
    #   weight averaging): BikeNYC 5.133 against the paper's 5.191, Jersey City 0.975 against
    #   1.047 (the constant rate overfits these sparse flows), Los Angeles 0.750 against 0.769
    #   for stage 1 alone;
    # - stage 1's patience 15 instead of 5: on a noisy validation curve 5 stops stage 1 while it
    #   is still improving (BikeNYC 103 epochs instead of 38, tuning 4.998 against 5.133; TaxiNYC
    #   best at epoch 109 where 5 stopped at 34), and level within one seed's noise where it is
    #   not (Jersey City tuning 0.984 against 0.975); on the test sets: TaxiNYC 44.54 against
    #   the paper protocol's 46.73 (the first fast, patience 5 in float32: 49.64), BikeNYC 3.3%
    #   below the paper protocol (2 seeds), but Jersey City 1-3% behind the first fast (2 seeds);
    # - precision="auto": bfloat16 where the hardware has it natively (epochs 1.4-1.7x faster on
    #   this project's CPU, RESULTS.md "Time per model"); the validation curves follow float32's
    #   epoch by epoch (BikeNYC, TaxiNYC).
    "fast": dict(patience=15, precision="auto", epochs_cont=30, lr_schedule="cosine",
                 average_last=10),
    # Five changes, each measured on BikeNYC (RESULTS.md, "Beyond the paper"; paper convention;
    # the paper configuration: 6.259 +- 0.057 over 3 seeds):
    # - average_last=50: the final weights are the mean of the weights at the end of stage 2's
    #   last 50 epochs (stochastic weight averaging along the paper's constant rate): 6.090 +-
    #   0.035 (2 seeds);
    # - precision="auto": bfloat16 where the hardware has it natively; the same error
    #   (6.106 +- 0.048), 1.6x faster on this project's 2-core CPU;
    # - weight_decay=0.3 (AdamW): with the two above, 5.787 +- 0.032 (4 seeds; 0.1: 5.929 +- 0.086,
    #   1.0: 6.130 with seed 1);
    # - loss="huber" (delta 0.1 on the [-1, 1] scale): with the three above, 5.717 +- 0.026
    #   (4 seeds; each 1.0-1.4% below MSE with the same seed);
    # - ensemble=2: two such models (seeds seed and seed+1) averaged: 5.673 (seeds 1 + 2 and 3 + 4
    #   alike); one model trains in about 22 min on 2 CPU cores shared with another training.
    # Other cities (RESULTS.md, "Other cities"): 11.5% better on Jersey City's bike trips, but 15.5%
    # worse on TaxiNYC, whose network underfits in stage 2 under it: there, keep the default fast
    # (bfloat16 follows float32's curve there and the Huber loss is the squared error on 99.96%
    # of its values; the weight decay measurably slows TaxiNYC's fit: RESULTS.md).
    "improved": dict(average_last=50, precision="auto", weight_decay=0.3, loss="huber",
                     ensemble=2),
}

# What a run folder written before an option existed ran with: --resume and summarize.py compare
# a setting that a folder lacks as this value (the paper's behaviour, which each option kept as
# its default when it was added).
BEFORE_IT_EXISTED = dict(use_time_of_day=False, ensemble=1, weight_decay=0.0, loss="mse",
                         huber_delta=0.1, warmup_epochs=0.0, plateau_factor=0.0,
                         plateau_cuts=2, output_activation="tanh",
                         output_bias=False,
                         lr_cont=0.0, lr_schedule="constant", average_last=0,
                         precision="float32", jit_compile=False, distribute="none",
                         backend="tensorflow", holiday_file="", meteorology_file="",
                         duplicates="error", empty_slots="keep", tune_days=0)
