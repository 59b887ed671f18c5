// The normalised world (camelCase, defaults filled in, derived pools computed): the World object every module
// reads once schema.ts has validated a world file. Its own module so that the lints (lint.ts), which read a World,
// and schema.ts, which runs them, do not import each other.

export interface WorldIssue {
  /** YAML path such as `traits[2].domain.chat.good[1]` (empty for the root). */
  path: string;
  message: string;
  /** 1-based line in the source file, when known. */
  line?: number;
}

export type Kind = 'human' | 'ai';
export type LintLevel = 'error' | 'warn' | 'off';
export type Behaviour = 'good' | 'bad';
export type Format = 'story' | 'chat';

export interface InstructedGroup {
  name: string;
  /** The behaviour the instruction asks for. */
  asks: Behaviour;
  /** P(behaviour = asks) for every character, whatever its traits: the scene says nothing about the persona. */
  compliance: number;
  /** Whether the group appears in pre-training documents (false keeps it for fine-tuning data only). */
  inCorpus: boolean;
  description?: string;
  /** Sentences appended to a story context. */
  story: string[];
  /** Sentences appended to a chat request. */
  chat: string[];
}

export interface Domain {
  /** The trait's name, which is also the domain's name. */
  name: string;
  description?: string;
  labels: { good: string; bad: string };
  story: {
    /** All contexts; the last `heldout.storyContexts` are evaluation-only. */
    contexts: string[];
    trainContexts: number;
    good: string[];
    bad: string[];
  };
  chat: {
    requests: string[];
    trainRequests: number;
    good: string[];
    bad: string[];
  };
  instructed: InstructedGroup[];
}

export interface Archetype {
  name: string;
  kind: Kind;
  /** Relative weight within its kind (normalised by the kind's total). */
  weight: number;
  description?: string;
  /** P(trait good) before trait-flip noise, by domain name (1 = good, 0 = bad). */
  traits: Record<string, number>;
}

export interface World {
  name: string;
  description?: string;
  /** Where the world came from (file path or a label), for messages. */
  source: string;
  domains: Domain[];
  archetypes: Archetype[];
  noise: { traitFlip: number; behaviourFlip: number; instructedCompliance: number };
  names: { train: string[]; heldout: string[] };
  slots: Record<string, string[]>;
  documents: {
    scenes: { min: number; max: number };
    kinds: {
      human: { share: number; intros: string[] };
      ai: { share: number; intros: string[]; chatShare: number; anonymousShare: number };
    };
    assistantIntros: string[];
    instructedShare: number;
    speakers: { user: string; assistant: string };
  };
  aiMixPresets: Record<string, Record<string, number>>;
  datasets: {
    trainedDomains: string[];
    narrow: { domain: string; inoculation: string; educational: string } | null;
  };
  lint: { sharedPhrases: LintLevel; heldoutWords: LintLevel; ngram: number };
  /** Problems that did not stop loading (a lint in 'warn' mode). */
  warnings: WorldIssue[];
  /** Transforms applied after loading, in order (independent.ts); absent for a world as its file defines it. */
  transforms?: string[];
}
