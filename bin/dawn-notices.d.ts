// Types for dawn-notices.js (plain JS so the launchers need no tsx before relaunching).
export declare const DAWN_NOTICES: readonly RegExp[];
export declare function isDawnNotice(line: string): boolean;
export declare function noticeFilter(write: (s: string) => void): {
  push(chunk: string): void;
  end(): void;
};
export declare function wantsVerbose(args: readonly string[], env?: NodeJS.ProcessEnv): boolean;
export declare function relaunchFiltered(): Promise<boolean>;
