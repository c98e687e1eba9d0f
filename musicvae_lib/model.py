"""MusicVAE for melodies (Roberts et al. 2018), in the order the paper draws it.

Encoder: a bidirectional LSTM reads the one-hot melody; the final states of both directions give
mu and sigma of a diagonal Gaussian q(z|x); z is drawn with the reparameterisation trick.

Decoder, flat: a multi-layer LSTM whose initial state is tanh(dense(z)), fed at each step the
previous token (one-hot) concatenated with z, emits 90 logits per step.

Decoder, hierarchical (Magenta's hierdec): a conductor LSTM, initialised from z, emits one
embedding per bar; a bar decoder LSTM, initialised from that embedding and fed it at every step,
decodes the bar's 16 steps. The conductor takes no inputs (Magenta's hierdec-mel_16bar,
``disable_autoregression``), but the bar decoder's inputs are the previous tokens over the WHOLE
sequence, as Magenta shifts them before splitting into bars: bar i starts from bar i-1's last
token (its last sample when sampling), so a bar knows whether a note carries over its bar line.
Teacher forcing still runs all bars at once; free sampling decodes the bars one after another.

Teacher-forced training runs each LSTM as ONE fused ``nn.LSTM`` call over the whole sequence;
only sampling and scheduled sampling step through time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from musicvae_lib.representation import N_CLASSES, STEPS_PER_BAR


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of a MusicVAE. Defaults: Magenta's cat-mel_2bar_small."""

    steps: int = 32  # sequence length: bars * 16
    z_size: int = 256  # latent dimensions
    encoder_size: int = 512  # LSTM units per direction
    encoder_layers: int = 1
    decoder_size: int = 256  # LSTM units of the (bar) decoder
    decoder_layers: int = 2
    conductor_size: int = 0  # 0: flat decoder; > 0: hierarchical, conductor LSTM units
    conductor_layers: int = 2
    n_classes: int = N_CLASSES

    @property
    def hierarchical(self) -> bool:
        return self.conductor_size > 0

    @property
    def bars(self) -> int:
        return self.steps // STEPS_PER_BAR

    def __post_init__(self) -> None:
        if self.hierarchical and self.steps % STEPS_PER_BAR:
            raise ValueError(
                f"`steps` must be a whole number of 16-step bars for a hierarchical decoder, got {self.steps}"
            )
        for name in ("steps", "z_size", "encoder_size", "encoder_layers", "decoder_size", "decoder_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")


PRESETS: dict[str, ModelConfig] = {
    # Magenta configs.py; encoder sizes are per direction, as in its BidirectionalLstmEncoder
    "cat-mel_2bar_small": ModelConfig(),
    "cat-mel_2bar_big": ModelConfig(z_size=512, encoder_size=2048, decoder_size=2048, decoder_layers=3),
    "hierdec-mel_16bar": ModelConfig(
        steps=256, z_size=512, encoder_size=2048, encoder_layers=2, decoder_size=1024, conductor_size=1024
    ),
    # the study's default for a 2-core CPU: cat-mel_2bar_small's shape (see benchmarks/train_throughput.py)
    "study": ModelConfig(),
    # the hierarchical profile's 16-bar model for a 2-core CPU, at half the study's widths: twice the steps a
    # minute of the 256-unit sizes, and on 16 bars these small models only begin to read z after ~1,500 steps
    "study-hier16": ModelConfig(steps=256, z_size=128, encoder_size=128, decoder_size=128, conductor_size=128),
    # its flat baseline: the same encoder, z and 2x128 decoder without the conductor (does the conductor help?)
    "study-flat16": ModelConfig(steps=256, z_size=128, encoder_size=128, decoder_size=128),
    # tiny sizes for tests and CI-sized runs
    "tiny": ModelConfig(z_size=16, encoder_size=32, decoder_size=32, decoder_layers=1),
    # tiny's encoder and z with a conductor: "tiny" is its flat baseline in CI-sized runs
    "tiny-hier": ModelConfig(
        z_size=16, encoder_size=32, decoder_size=32, decoder_layers=1, conductor_size=32, conductor_layers=1
    ),
}


def preset(name: str, **changes) -> ModelConfig:
    """A named preset, optionally with fields changed: ``preset("study", z_size=512)``."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose from {sorted(PRESETS)}")
    return replace(PRESETS[name], **changes)


def initial_state(dense: nn.Linear, embedding: Tensor, layers: int, size: int) -> tuple[Tensor, Tensor]:
    """LSTM (h, c) [layers, batch, size] from tanh(dense(embedding)), as Magenta's initial_cell_state_from_embedding."""
    state = torch.tanh(dense(embedding))  # (B, layers * 2 * size)
    h, c = state.view(-1, layers, 2, size).permute(2, 1, 0, 3).unbind(0)  # each (layers, B, size)
    return h.contiguous(), c.contiguous()


def shifted_inputs(tokens: Tensor, n_classes: int) -> Tensor:
    """Teacher-forcing inputs: the one-hot of the previous token, zeros at the first step. [B, T, C]."""
    one_hot = F.one_hot(tokens.long(), n_classes).float()
    return F.pad(one_hot[:, :-1], (0, 0, 1, 0))


def dropped_inputs(inputs: Tensor, probability: float, generator: torch.Generator | None) -> Tensor:
    """Decoder inputs [B, T, C] with each step's one-hot set to zeros with ``probability`` (Bowman et al. 2016's word
    dropout, the blank being the first step's no-previous-token input): the decoder then has only z and its state
    to go on there. One uniform draw per step from ``generator``."""
    keep = torch.rand(inputs.shape[:2], device=inputs.device, generator=generator) >= probability
    return inputs * keep[..., None].to(inputs.dtype)


def sample_tokens(logits: Tensor, temperature: float, generator: torch.Generator | None) -> Tensor:
    """One token per row from logits [B, C]: argmax if temperature is 0, else a softmax sample."""
    if temperature == 0:
        return logits.argmax(-1)
    probabilities = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probabilities, 1, generator=generator).squeeze(-1)


class Encoder(nn.Module):
    """Bidirectional LSTM: tokens [B, T] -> mu, sigma [B, z_size]."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_classes = config.n_classes
        self.lstm = nn.LSTM(
            config.n_classes, config.encoder_size, config.encoder_layers, batch_first=True, bidirectional=True
        )
        self.to_mu = nn.Linear(2 * config.encoder_size, config.z_size)
        self.to_sigma = nn.Linear(2 * config.encoder_size, config.z_size)

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        _, (h, _) = self.lstm(F.one_hot(tokens.long(), self.n_classes).float())
        final = torch.cat([h[-2], h[-1]], dim=-1)  # last layer, forward and backward: (B, 2H)
        return self.to_mu(final), F.softplus(self.to_sigma(final))


class LstmDecoder(nn.Module):
    """Autoregressive LSTM over tokens, conditioned on an embedding (z, or a bar's conductor output).

    The embedding sets the initial state and is concatenated to every input, as in Magenta's
    CategoricalLstmDecoder.
    """

    def __init__(self, config: ModelConfig, embedding_size: int):
        super().__init__()
        self.n_classes, self.layers, self.size = config.n_classes, config.decoder_layers, config.decoder_size
        self.to_state = nn.Linear(embedding_size, 2 * self.layers * self.size)
        self.lstm = nn.LSTM(config.n_classes + embedding_size, self.size, self.layers, batch_first=True)
        self.to_logits = nn.Linear(self.size, config.n_classes)

    def teacher_forced(self, embedding: Tensor, inputs: Tensor) -> Tensor:
        """Logits [B, T, C] given the previous tokens' one-hots [B, T, C] (``shifted_inputs``); one fused LSTM call."""
        inputs = torch.cat([inputs, embedding[:, None].expand(-1, inputs.shape[1], -1)], dim=-1)
        outputs, _ = self.lstm(inputs, initial_state(self.to_state, embedding, self.layers, self.size))
        return self.to_logits(outputs)

    def step_through(
        self,
        embedding: Tensor,
        steps: int,
        temperature: float = 0.0,
        targets: Tensor | None = None,
        teacher_probability: float = 0.0,
        generator: torch.Generator | None = None,
        start: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Decode step by step feeding back the model's own tokens: (tokens [B, T], logits [B, T, C]).

        With ``targets`` and ``teacher_probability`` > 0, each input is the true previous token with that
        probability (scheduled sampling, Bengio et al. 2015, as Magenta's decoder does). ``start`` is the
        first input [B, C] (a bar decoder's: the previous bar's last token); zeros when None.
        """
        batch = embedding.shape[0]
        state = initial_state(self.to_state, embedding, self.layers, self.size)
        previous = torch.zeros(batch, self.n_classes, device=embedding.device) if start is None else start
        tokens, logits = [], []
        for step in range(steps):
            output, state = self.lstm(torch.cat([previous, embedding], dim=-1)[:, None], state)
            step_logits = self.to_logits(output[:, 0])
            token = sample_tokens(step_logits.detach(), temperature, generator)
            if targets is not None and teacher_probability > 0:
                use_truth = torch.rand(batch, device=embedding.device, generator=generator) < teacher_probability
                token = torch.where(use_truth, targets[:, step].long(), token)
            previous = F.one_hot(token, self.n_classes).to(embedding.dtype)
            tokens.append(token)
            logits.append(step_logits)
        return torch.stack(tokens, 1), torch.stack(logits, 1)


class Conductor(nn.Module):
    """LSTM that turns z into one embedding per bar: [B, z] -> [B, bars, conductor_size]."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.bars, self.layers, self.size = config.bars, config.conductor_layers, config.conductor_size
        self.to_state = nn.Linear(config.z_size, 2 * self.layers * self.size)
        self.lstm = nn.LSTM(1, self.size, self.layers, batch_first=True)

    def forward(self, z: Tensor) -> Tensor:
        inputs = z.new_zeros(z.shape[0], self.bars, 1)  # no autoregression: the state carries everything
        outputs, _ = self.lstm(inputs, initial_state(self.to_state, z, self.layers, self.size))
        return outputs


class MusicVAE(nn.Module):
    """Encoder + flat or hierarchical decoder. Tokens are LongTensor [batch, steps] of classes 0..89."""

    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.conductor = Conductor(config) if config.hierarchical else None
        embedding = config.conductor_size if config.hierarchical else config.z_size
        self.decoder = LstmDecoder(config, embedding)

    def encode(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """mu, sigma [B, z_size] of q(z|x)."""
        return self.encoder(tokens)

    def forward(
        self,
        tokens: Tensor,
        generator: torch.Generator | None = None,
        teacher_probability: float = 1.0,
        input_dropout: float = 0.0,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Training pass: (logits [B, T, C], mu, sigma [B, z_size]) with z drawn from q(z|x).

        ``teacher_probability`` 1: teacher forcing, one fused LSTM call. Below 1: scheduled sampling,
        each decoder input the true token with that probability, else a T = 1 sample of the model's
        own (Magenta's ScheduledOutputTrainingHelper). ``input_dropout`` (teacher forcing only): each
        decoder input blanked with that probability (``dropped_inputs``).
        """
        mu, sigma = self.encode(tokens)
        # float32 noise: the same draws with or without bf16 autocast, and not rounded to 8 bits
        noise = torch.randn(mu.shape, device=mu.device, dtype=torch.float32, generator=generator)
        z = mu + sigma * noise
        if teacher_probability >= 1.0:
            return self.decode_teacher_forced(z, tokens, input_dropout, generator), mu, sigma
        if input_dropout:
            raise ValueError(
                "input_dropout blanks teacher-forced inputs; scheduled sampling (teacher_probability < 1) "
                "feeds the model's own samples instead"
            )
        _, logits = self.decode(z, 1.0, tokens, teacher_probability, generator)
        return logits, mu, sigma

    def decode_teacher_forced(
        self, z: Tensor, tokens: Tensor, input_dropout: float = 0.0, generator: torch.Generator | None = None
    ) -> Tensor:
        """Logits [B, T, C] of p(x|z) given the true previous tokens, each blanked with ``input_dropout``."""
        inputs = shifted_inputs(tokens, self.config.n_classes)  # shifted over the whole sequence, then split
        if input_dropout:
            inputs = dropped_inputs(inputs, input_dropout, generator)
        if self.conductor is None:
            return self.decoder.teacher_forced(z, inputs)
        batch, bars = tokens.shape[0], self.config.bars
        embeddings = self.conductor(z).reshape(batch * bars, -1)  # (B*bars, E)
        bar_inputs = inputs.reshape(batch * bars, STEPS_PER_BAR, -1)
        return self.decoder.teacher_forced(embeddings, bar_inputs).reshape(batch, self.config.steps, -1)

    def decode(
        self,
        z: Tensor,
        temperature: float = 0.0,
        targets: Tensor | None = None,
        teacher_probability: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Free-running decode from z [B, z_size]: (tokens [B, T], logits [B, T, C]). Temperature 0 is greedy.

        Hierarchical with scheduled sampling (``targets``, ``teacher_probability`` > 0): every bar starts
        from the true last token of the bar before, as Magenta's training does, so the bars run at once.
        Otherwise each bar starts from the last token decoded in the bar before, so they run in turn.
        """
        if self.conductor is None:
            return self.decoder.step_through(z, self.config.steps, temperature, targets, teacher_probability, generator)
        embeddings = self.conductor(z)  # (B, bars, E)
        if targets is not None and teacher_probability > 0:
            return self.decode_bars_at_once(embeddings, temperature, targets, teacher_probability, generator)
        return self.decode_bars_in_turn(embeddings, temperature, generator)

    def decode_bars_at_once(
        self,
        embeddings: Tensor,
        temperature: float,
        targets: Tensor,
        teacher_probability: float,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, Tensor]:
        """Scheduled sampling over all bars as one batch, each bar starting from the true previous token."""
        batch, bars = targets.shape[0], self.config.bars
        starts = shifted_inputs(targets, self.config.n_classes)[:, ::STEPS_PER_BAR].reshape(batch * bars, -1)
        tokens, logits = self.decoder.step_through(
            embeddings.reshape(batch * bars, -1),
            STEPS_PER_BAR,
            temperature,
            targets.reshape(batch * bars, STEPS_PER_BAR),
            teacher_probability,
            generator,
            starts.to(embeddings.dtype),
        )
        return tokens.reshape(batch, self.config.steps), logits.reshape(batch, self.config.steps, -1)

    def decode_bars_in_turn(
        self, embeddings: Tensor, temperature: float, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        """Free decoding bar after bar, each bar starting from the last token decoded in the one before."""
        tokens, logits, start = [], [], None
        for bar in range(self.config.bars):
            bar_tokens, bar_logits = self.decoder.step_through(
                embeddings[:, bar], STEPS_PER_BAR, temperature, generator=generator, start=start
            )
            start = F.one_hot(bar_tokens[:, -1], self.config.n_classes).to(embeddings.dtype)
            tokens.append(bar_tokens)
            logits.append(bar_logits)
        return torch.cat(tokens, 1), torch.cat(logits, 1)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        device: str | torch.device = "cpu",
    ) -> Tensor:
        """n melodies [n, steps] decoded from z ~ N(0, I) of the prior."""
        z = torch.randn(n, self.config.z_size, generator=generator, device=device)
        return self.decode(z, temperature, generator=generator)[0]

    @torch.no_grad()
    def reconstruct(self, tokens: Tensor, temperature: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
        """Melodies [B, steps] decoded from z = mu(x)."""
        mu, _ = self.encode(tokens)
        return self.decode(mu, temperature, generator=generator)[0]
